"""Serve an exported model over HTTP: texts in, the entities predict.py prints out.

    python serve.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model --port 8000
    curl -s 127.0.0.1:8000/predict -H 'Content-Type: application/json' -d '{"texts": ["张伟在北京大学工作。"]}'

POST /predict {"texts": [str, ...]} -> {"results": [{"text": ..., "entities": [{"type", "text", "start", "end"}]}]},
one result per text, in order, exactly what `predict.py --model_dir SAME` prints for those texts (offsets into each
text; long texts are windowed the same way). GET /health -> {"status": "ok", ...}. A request that is not JSON, lacks
"texts", has a wrong type, an empty list, a text over --max_text_chars or more than --max_texts texts gets a 4xx
with {"error": "..."}; nothing a client sends stops the server from answering the next request.

Concurrent requests are batched: a model thread takes the first waiting request, gathers others that arrive within
--batch_wait_ms (up to --max_batch_texts texts), labels them in one pass and answers each. --workers N starts N
processes, each with one model copy. --model_dir is what predict.py takes: a static export (Paddle Inference with
oneDNN), a quantize_model.py directory with --backend onnxruntime (INT8), or a dygraph model directory.
Built on FastAPI + uvicorn directly (see README, "Serving" for why not paddlenlp.server).
"""
import argparse
import asyncio
import json
import os
import queue
import sys
import threading
import time

import predict
import utils
from ner_ofa import cli
from ner_ofa.cli import UserError, logger

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
    p.add_argument("--threads", type=int, default=2, help="CPU math threads per model copy")
    p.add_argument("--batch_size", type=int, default=32, help="windows per model call")
    p.add_argument("--max_batch_texts", type=int, default=64, help="texts labelled together from concurrent requests")
    p.add_argument("--batch_wait_ms", type=float, default=5.0,
                   help="how long the model thread waits for more requests to batch with the first one")
    p.add_argument("--max_texts", type=int, default=64, help="texts one request may send (more: 413)")
    p.add_argument("--max_text_chars", type=int, default=10000, help="characters one text may have (more: 413)")
    p.add_argument("--max_seq_length", type=int, default=None, help="window length (default: the model's)")
    return p.parse_args(argv)


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def body_limit(max_texts, max_text_chars):
    """The most bytes a valid /predict body can take: every character escaped (\\uXXXX), plus room for the JSON."""
    return max_texts * (max_text_chars * 6 + 8) + 1024


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


class BatchingLabeller:
    """One model copy and the thread that runs it: requests queue up, and the thread labels the texts of all
    requests that arrived within the wait window in one pass (windows of all texts batched by length)."""

    def __init__(self, args):
        self.logits_fn, tokenizer, model_info = predict.load_predictor(args.model_dir, "cpu", args.threads,
                                                                       args.backend, args.precision)
        self.encoder, self.labels = utils.CharEncoder(tokenizer), model_info["labels"]
        self.max_seq_length = args.max_seq_length or model_info.get("max_seq_length", 128)
        cli.check_max_seq_length(self.max_seq_length, model_info)
        self.batch_size, self.max_batch_texts = args.batch_size, args.max_batch_texts
        self.wait = args.batch_wait_ms / 1000.0
        self.model_info = model_info
        self.jobs = queue.Queue()
        self.batches = 0
        threading.Thread(target=self._run, name="model", daemon=True).start()

    def label(self, texts):
        """Entities per text (what predict.py computes)."""
        return utils.predict_entities(self.logits_fn, texts, self.encoder, self.labels, self.max_seq_length,
                                      self.batch_size)

    def submit(self, texts, done):
        """Queue ``texts``; ``done(results or exception)`` is called from the model thread."""
        self.jobs.put((texts, done))

    def _run(self):
        while True:
            jobs = [self.jobs.get()]
            count = len(jobs[0][0])
            deadline = time.monotonic() + self.wait
            while count < self.max_batch_texts:
                try:
                    job = self.jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                jobs.append(job)
                count += len(job[0])
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                results = self.label(texts)
            except Exception as error:  # answer every waiting request; the thread goes on
                logger.exception("labelling a batch of %d texts failed", len(texts))
                for _, done in jobs:
                    try:
                        done(error)
                    except Exception:
                        logger.exception("could not hand back an error")
                continue
            self.batches += 1
            start = 0
            for job_texts, done in jobs:
                try:  # one vanished client must not stop the thread that answers everyone
                    done(results[start:start + len(job_texts)])
                except Exception:
                    logger.exception("could not hand back an answer")
                start += len(job_texts)


def create_app(args):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    labeller = BatchingLabeller(args)
    app = FastAPI(title="msra-ner-ofa", docs_url=None, redoc_url=None)
    served = {"requests": 0, "texts": 0}

    @app.get("/health")
    def health():
        return {"status": "ok", "model_dir": args.model_dir, "kind": labeller.model_info.get("kind"),
                "width_mult": labeller.model_info.get("width_mult", 1.0), "labels": labeller.labels,
                "requests": served["requests"], "texts": served["texts"], "batches": labeller.batches}

    @app.post("/predict")
    async def predict_texts(request: Request):
        try:
            body = await read_body(request, body_limit(args.max_texts, args.max_text_chars))
            texts = parse_request(body, args.max_texts, args.max_text_chars)
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        labeller.submit(texts, lambda result: loop.call_soon_threadsafe(answer.set_result, result))
        results = await answer
        if isinstance(results, Exception):
            return JSONResponse({"error": f"labelling failed ({type(results).__name__})"}, status_code=500)
        served["requests"] += 1
        served["texts"] += len(texts)
        return {"results": [{"text": text, "entities": entities} for text, entities in zip(texts, results)]}

    return app


def app_from_env():
    """The app of one worker process (--workers > 1): its flags come from the parent through the environment.
    A worker that cannot load the model exits with 3, which uvicorn takes as "do not restart"."""
    cli.setup_logging()
    try:
        return create_app(argparse.Namespace(**json.loads(os.environ[CONFIG_ENV])))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)


def main(args):
    import uvicorn

    cli.setup_logging()
    for name in ("port", "workers", "threads", "batch_size", "max_batch_texts", "max_texts", "max_text_chars"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.batch_wait_ms < 0:
        raise UserError(f"--batch_wait_ms must be >= 0, got {args.batch_wait_ms}")
    logger.info("serving %s on http://%s:%d (%d worker(s)): POST /predict {\"texts\": [...]}, GET /health",
                args.model_dir, args.host, args.port, args.workers)
    if args.workers == 1:
        uvicorn.run(create_app(args), host=args.host, port=args.port, log_level="warning")
    else:
        predict.load_predictor(args.model_dir, "cpu", 1, args.backend, args.precision)  # bad input: one line, here
        os.environ[CONFIG_ENV] = json.dumps(vars(args))
        uvicorn.run("serve:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="warning", app_dir=os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    cli.run_main(main, parse_args)
