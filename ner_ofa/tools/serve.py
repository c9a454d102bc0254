"""Serve an exported model over HTTP: texts in, the entities predict.py prints out.

    python serve.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model --port 8000
    curl -s 127.0.0.1:8000/predict -H 'Content-Type: application/json' -d '{"texts": ["张伟在北京大学工作。"]}'

POST /predict {"texts": [str, ...]} -> {"results": [{"text": ..., "entities": [{"type", "text", "start", "end"}]}]},
one result per text, in order, exactly what `predict.py --model_dir SAME` prints for those texts (offsets into each
text; long texts are windowed the same way). GET /health -> {"status": "ok", ...}.

What a client gets when it misbehaves, so that the others keep being answered:
  4xx {"error": ...}  not JSON, no "texts", a wrong type, an empty list, a text over --max_text_chars, more than
                      --max_texts texts (413), a body over what those limits can take (413, before it is read)
  408                 the body did not arrive within --body_timeout seconds (the connection is closed)
  503 + Retry-After   the queue is full: --max_queue requests waiting, or a request larger than one model call
                      and than its share (--max_queued_windows / --max_queue) while --max_queued_windows wait
  504                 no answer within --request_timeout seconds (its remaining work is dropped)
  (connection closed) request headers not complete within --idle_timeout seconds, or idle that long between
                      requests; more than --max_connections connections get 503 (uvicorn's limit_concurrency)
A client that disconnects before its answer has its remaining work dropped before the model runs it.

Scheduling: one model thread runs one call (at most --batch_size windows) at a time. Small requests (one call's
worth of windows or less) that arrive within --batch_wait_ms are labelled together; a larger request is labelled
in slices of one call, taking turns with the small ones and with other large ones, so no request holds the model
for more than one call while others wait. --workers N starts N processes, each with one model copy.
--model_dir is what predict.py takes: a static export (Paddle Inference with oneDNN), a quantize_model.py directory
with --backend onnxruntime (INT8), or a dygraph model directory. Built on FastAPI + uvicorn.
"""
import argparse
import asyncio
import collections
import json
import os
import queue
import sys
import threading
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

from ner_ofa.features import make_windows
from ner_ofa.labelling import Labelling, entities_from_label_ids
from ner_ofa import cli
from ner_ofa.cli import UserError, logger
from ner_ofa.predictor import NerPredictor

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where ner_ofa/ is
CONFIG_ENV = "MSRA_NER_OFA_SERVE_CONFIG"  # how --workers > 1 hands the flags to each worker process


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--model_dir", required=True, help="what predict.py takes: a static export (dir or PREFIX), a "
                                                      "quantize_model.py dir (with --backend onnxruntime), a model dir")
    p.add_argument("--backend", choices=["paddle", "onnxruntime"], default="paddle", help="as in predict.py")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8", help="ONNX model to run (onnxruntime)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model copy")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="device each model copy runs on")
    p.add_argument("--threads", type=int, default=2, help="CPU math threads per model copy")
    p.add_argument("--batch_size", type=int, default=32, help="windows per model call")
    p.add_argument("--max_batch_texts", type=int, default=64, help="texts labelled together from concurrent requests")
    p.add_argument("--batch_wait_ms", type=float, default=5.0,
                   help="how long the model thread waits for more requests to batch with the first one")
    p.add_argument("--max_texts", type=int, default=64, help="texts one request may send (more: 413)")
    p.add_argument("--max_text_chars", type=int, default=10000, help="characters one text may have (more: 413)")
    p.add_argument("--max_seq_length", type=int, default=None, help="window length (default: the model's)")
    p.add_argument("--max_queue", type=int, default=256, help="requests waiting or in work (more: 503)")
    p.add_argument("--max_queued_windows", type=int, default=None,
                   help="windows of work waiting beyond which a request of more than one model call gets 503 "
                        "(default: twice a request of --max_texts texts of --max_text_chars characters)")
    p.add_argument("--request_timeout", type=float, default=60.0, help="seconds to an answer (then 504)")
    p.add_argument("--body_timeout", type=float, default=10.0, help="seconds to receive a request's body (then 408)")
    p.add_argument("--idle_timeout", type=float, default=5.0,
                   help="seconds a connection may take to send its request headers, or stay idle between requests")
    p.add_argument("--max_connections", type=int, default=512,
                   help="open connections and requests in progress (more: 503; uvicorn's limit_concurrency)")
    return p.parse_args(argv)


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def body_limit(max_texts, max_text_chars):
    """The most bytes a valid /predict body can take: every character escaped as JSON allows at its longest (a
    character outside the BMP as a surrogate pair, \\uXXXX\\uXXXX: 12 bytes), plus room for the JSON around."""
    return max_texts * (max_text_chars * 12 + 8) + 1024


def parse_request(body, max_texts, max_text_chars):
    """The texts of a /predict body, or RequestError(4xx, why)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError(400, "the body is not JSON (UTF-8)") from None
    if not isinstance(data, dict) or "texts" not in data:
        raise RequestError(422, 'expected a JSON object {"texts": [str, ...]}')
    unknown = sorted(set(data) - {"texts"})
    if unknown:
        raise RequestError(422, f"unknown field(s): {', '.join(unknown)}")
    texts = data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(422, '"texts" must be a list of strings')
    if not texts:
        raise RequestError(422, '"texts" is empty')
    if len(texts) > max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; at most {max_texts}")
    longest = max(len(t) for t in texts)
    if longest > max_text_chars:
        raise RequestError(413, f"a text of {longest} characters; at most {max_text_chars}")
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(422, "a text holds a lone surrogate (not Unicode text)") from None
    return texts


async def read_body(request, limit):
    """The request body, refused with 413 past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"a body of {declared} bytes; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"a body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Busy(Exception):
    """The queue is full: the request is refused (503) before any work is done for it."""


class Job:
    """One request's texts on their way through the model; ``done(results or exception)`` answers it."""

    def __init__(self, texts, windows, done):
        self.texts, self.windows, self.done = texts, windows, done
        self.cancelled = False  # set by the request's handler: the client left or the deadline passed


class Group:
    """Jobs labelled together: one ``Labelling`` over all their texts."""

    def __init__(self, jobs, encoder, max_seq_length, shapes):
        self.jobs = jobs
        texts = [t for job in jobs for t in job.texts]
        self.labelling = Labelling([encoder.encode(list(t)) for t in texts], encoder, max_seq_length, shapes)

    def abandoned(self):
        return all(job.cancelled for job in self.jobs)


class FairLabeller:
    """One model copy and the thread that runs it, one call (at most ``batch_size`` windows) at a time.

    Admission is bounded (``submit`` raises Busy). Small jobs (at most one call's windows) that arrive together
    are grouped and labelled in one pass; each large job is its own group. The thread alternates between the
    oldest small group and the next large group (large groups take turns), one call each, so a large request
    never holds the model for more than one call while others wait. Groups whose clients all left are dropped
    before their next call."""

    def __init__(self, logits_fn, encoder, labels, max_seq_length, batch_size, max_batch_texts=64, batch_wait=0.005,
                 max_queue=256, max_queued_windows=None, shapes="buckets"):
        self.logits_fn, self.encoder, self.labels, self.shapes = logits_fn, encoder, labels, shapes
        self.max_seq_length, self.batch_size, self.max_batch_texts = max_seq_length, batch_size, max_batch_texts
        self.wait, self.max_queue = batch_wait, max_queue
        self.max_queued_windows = max_queued_windows if max_queued_windows is not None else float("inf")
        # a request of at most this many windows is admitted whatever waits (only --max_queue bounds it): one
        # model call, or its share of the window budget among --max_queue requests
        self.fair_share = max(batch_size, int(self.max_queued_windows // max_queue) if max_queued_windows else 0)
        self.incoming = queue.Queue()
        self.lock = threading.Lock()
        self.pending_requests = self.pending_windows = 0
        self.calls = self.batches = self.windows_scored = self.dropped = 0
        threading.Thread(target=self._run, name="model", daemon=True).start()

    def windows_needed(self, texts):
        size = self.max_seq_length - 2
        return sum(len(make_windows(len(t), size)) for t in texts)

    def submit(self, texts, done):
        """Queue ``texts`` (a Job) or raise Busy; ``done`` is called from the model thread, unless cancelled."""
        windows = self.windows_needed(texts)
        with self.lock:
            if self.pending_requests >= self.max_queue:
                raise Busy(f"{self.pending_requests} requests in the queue")
            if windows > self.fair_share and self.pending_windows + windows > self.max_queued_windows:
                raise Busy(f"{self.pending_windows} windows of work waiting; this request needs {windows}")
            self.pending_requests += 1
            self.pending_windows += windows
        job = Job(texts, windows, done)
        self.incoming.put(job)
        return job

    def _finish(self, job, result):
        with self.lock:
            self.pending_requests -= 1
            self.pending_windows -= job.windows
        if job.cancelled:
            return
        try:  # one vanished client must not stop the thread that answers everyone
            job.done(result)
        except Exception:
            logger.exception("could not hand back an answer")

    def _arrivals(self, block):
        """Jobs that arrived: when idle, wait for one, then up to --batch_wait_ms for more small ones."""
        jobs = []
        try:
            jobs.append(self.incoming.get(block=block))
        except queue.Empty:
            return jobs
        deadline = time.monotonic() + (self.wait if block else 0.0)
        while True:
            try:
                jobs.append(self.incoming.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return jobs

    def _admit(self, jobs, small, large):
        group = []
        for job in jobs:
            if job.cancelled:
                self.dropped += 1
                self._finish(job, None)
            elif job.windows > self.batch_size:
                large.append(Group([job], self.encoder, self.max_seq_length, self.shapes))
            else:
                if group and sum(len(j.texts) for j in group) + len(job.texts) > self.max_batch_texts:
                    small.append(Group(group, self.encoder, self.max_seq_length, self.shapes))
                    group = []
                group.append(job)
        if group:
            small.append(Group(group, self.encoder, self.max_seq_length, self.shapes))

    def _run(self):
        small, large = collections.deque(), collections.deque()
        large_turn = False
        while True:
            self._admit(self._arrivals(block=not (small or large)), small, large)
            for lane in (small, large):
                for group in [g for g in lane if g.abandoned()]:
                    lane.remove(group)
                    self.dropped += len(group.jobs)
                    for job in group.jobs:
                        self._finish(job, None)
            if not (small or large):
                continue
            lane = large if large and (large_turn or not small) else small
            large_turn = not large_turn
            group = lane[0]
            try:
                windows = group.labelling.score_next(self.logits_fn, self.batch_size)
                self.calls += 1
                self.windows_scored += windows
                if group.labelling.remaining():
                    lane.rotate(-1)  # large groups take turns; a small group is finished first
                    continue
                lane.popleft()
                preds = group.labelling.label_ids(self.labels)
                probs = group.labelling.label_probs(preds)
            except Exception as error:  # answer every request of the group; the thread goes on
                logger.exception("labelling %d texts failed", sum(len(job.texts) for job in group.jobs))
                if group in lane:
                    lane.remove(group)
                for job in group.jobs:
                    self._finish(job, error)
                continue
            self.batches += 1
            start = 0
            for job in group.jobs:
                texts = job.texts
                self._finish(job, entities_from_label_ids(texts, preds[start:start + len(texts)], self.labels,
                                                          probs[start:start + len(texts)]))
                start += len(texts)


def load_labeller(args):
    """The model of --model_dir behind a FairLabeller with the flags' limits."""
    ner = NerPredictor(args.model_dir, args.device, args.threads, args.backend, args.precision, args.max_seq_length,
                       args.batch_size)
    max_seq_length = ner.max_seq_length
    max_queued = args.max_queued_windows
    if max_queued is None:
        max_queued = 2 * args.max_texts * len(make_windows(args.max_text_chars, max_seq_length - 2))
    labeller = FairLabeller(ner.logits_fn, ner.encoder, ner.labels, max_seq_length, args.batch_size,
                            args.max_batch_texts, args.batch_wait_ms / 1000.0, args.max_queue, max_queued, ner.shapes)
    labeller.model_info = ner.model_info
    return labeller


async def wait_for_disconnect(request):
    """Returns when the client has closed its connection (the request's body already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(args, labeller=None):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    labeller = labeller or load_labeller(args)
    app = FastAPI(title="msra-ner-ofa", docs_url=None, redoc_url=None)
    served = {"requests": 0, "texts": 0, "timeouts": 0, "disconnects": 0, "busy": 0}
    info = getattr(labeller, "model_info", {})

    @app.get("/health")
    def health():
        return {"status": "ok", "model_dir": args.model_dir, "device": args.device, "kind": info.get("kind"),
                "width_mult": info.get("width_mult", 1.0), "labels": labeller.labels, **served,
                "batches": labeller.batches, "model_calls": labeller.calls, "windows_scored": labeller.windows_scored,
                "dropped": labeller.dropped, "queued_requests": labeller.pending_requests}

    @app.post("/predict")
    async def predict_texts(request: Request):
        try:
            body = await asyncio.wait_for(read_body(request, body_limit(args.max_texts, args.max_text_chars)),
                                          args.body_timeout)
            texts = parse_request(body, args.max_texts, args.max_text_chars)
        except asyncio.TimeoutError:
            return JSONResponse({"error": f"the body did not arrive within {args.body_timeout:g} s"},
                                status_code=408, headers={"Connection": "close"})
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        loop = asyncio.get_running_loop()
        answer = loop.create_future()

        def hand_back(result):
            loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(result))

        try:
            job = labeller.submit(texts, hand_back)
        except Busy as error:
            served["busy"] += 1
            return JSONResponse({"error": f"busy ({error}); retry later"}, status_code=503,
                                headers={"Retry-After": "1"})
        gone = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            finished, _ = await asyncio.wait({answer, gone}, timeout=args.request_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if answer not in finished:
            job.cancelled = True
            if gone in finished:
                served["disconnects"] += 1
                return Response(status_code=499)  # nobody is there to read it
            served["timeouts"] += 1
            return JSONResponse({"error": f"no answer within {args.request_timeout:g} s"}, status_code=504)
        results = answer.result()
        if isinstance(results, Exception):
            return JSONResponse({"error": f"labelling failed ({type(results).__name__})"}, status_code=500)
        served["requests"] += 1
        served["texts"] += len(texts)
        return {"results": [{"text": text, "entities": entities} for text, entities in zip(texts, results)]}

    return app


class Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a connection whose request headers are not complete within
    ``timeout_keep_alive`` seconds of it opening (or of its last response) is closed. uvicorn itself times out
    only idle connections between requests, so a client that connects and sends nothing, or its headers a byte
    at a time, would hold a connection forever."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc):
        self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self):
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.timeout_keep_alive, self._header_timeout)

    def _header_timeout(self):
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def uvicorn_limits(args):
    """uvicorn's own limits from the flags."""
    return dict(limit_concurrency=args.max_connections, timeout_keep_alive=args.idle_timeout, http=Protocol,
                h11_max_incomplete_event_size=16 * 1024, timeout_graceful_shutdown=SHUTDOWN_SECONDS)


SHUTDOWN_SECONDS = 5  # on SIGTERM, requests in progress get this long before the server exits anyway


def app_from_env():
    """The app of one worker process (--workers > 1): its flags come from the parent through the environment.
    A worker that cannot load the model, for whatever reason, exits with 3, which uvicorn's supervisor takes as
    a failed start: it stops the server instead of restarting the worker again and again."""
    cli.setup_logging()
    try:
        return create_app(argparse.Namespace(**json.loads(os.environ[CONFIG_ENV])))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
    except Exception as error:
        print(f"error: the model could not be loaded ({type(error).__name__}: {error})", file=sys.stderr)
    sys.exit(3)


def main(args):
    import uvicorn

    cli.setup_logging()
    for name in ("port", "workers", "threads", "batch_size", "max_batch_texts", "max_texts", "max_text_chars",
                 "max_queue", "request_timeout", "body_timeout", "idle_timeout", "max_connections"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.batch_wait_ms < 0:
        raise UserError(f"--batch_wait_ms must be >= 0, got {args.batch_wait_ms}")
    logger.info("serving %s on http://%s:%d (%d worker(s)): POST /predict {\"texts\": [...]}, GET /health",
                args.model_dir, args.host, args.port, args.workers)
    if args.workers == 1:
        uvicorn.run(create_app(args), host=args.host, port=args.port, log_level="warning", **uvicorn_limits(args))
    else:
        NerPredictor(args.model_dir, args.device, 1, args.backend, args.precision, args.max_seq_length)  # bad input: here
        os.environ[CONFIG_ENV] = json.dumps(vars(args))
        uvicorn.run("ner_ofa.tools.serve:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="warning", app_dir=PACKAGE_PARENT, **uvicorn_limits(args))


def run(argv=None):
    """The console script ``ner-ofa-serve`` (and ``python serve.py``)."""
    return cli.run_main(main, parse_args, argv)


if __name__ == "__main__":
    run()
