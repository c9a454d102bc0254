"""Load test of serve.py on 127.0.0.1: N concurrent clients send MSRA test sentences, one sentence a request.

    python scripts/load_test_serve.py                # a small width-0.5 model (2 layers x 192), random weights
    python scripts/load_test_serve.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model   # your export

Starts serve.py on a free loopback port, runs each client count in turn (bounded: --sentences requests per phase,
--max_seconds per phase), and records per phase throughput (texts/s, chars/s), p50/p99 request latency, errors (must
be 0), and the server's resident memory; then labels the same sentences in-process through predict.py's code path
(the ceiling: no HTTP, all texts in one call) and checks the server's answers equal it. Then the attack phases:
--attack_clients well-behaved clients alone, and again while (a) --slow_connections connections send headers and a
few body bytes and stall, (b) --hang_ups_per_s clients a second send a request and hang up, (c) one client sends a
maximal request (--max_texts x --max_text_chars of serve.py's defaults) every second; per phase the good clients'
throughput, p50/p99 and errors, what the attackers got, and the server's memory. Writes results/serve_cpu.json.
"""
import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

from ner_ofa.data import read_ner_file  # noqa: E402
from ner_ofa import NerPredictor, cli, model_io, stages  # noqa: E402
from ner_ofa.cli import UserError, logger  # noqa: E402
from ner_ofa.timing import MSRA_LABELS, hardware  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--model_dir", default=None,
                   help="what serve.py serves (a static export: dir or PREFIX); default: build one in --work_dir of the "
                        "committed MSRA run's width-0.5 shape (2 layers, hidden 192, 6 of 12 heads, 384 of 768 FFN "
                        "neurons, the bert-base-chinese vocabulary cut to MSRA train's characters) with random "
                        "weights -- speed and memory do not depend on the weights' values")
    p.add_argument("--work_dir", default=os.path.join(REPO, "tmp", "serve_cpu"), help="where that model is built")
    p.add_argument("--bert_dir", default=os.path.join(SHARED, "bert-base-chinese"),
                   help="vocab.txt + config.json for the built model")
    p.add_argument("--data_file", default=os.path.join(SHARED, "msra_ner", "test.tsv"),
                   help="msra_ner-layout file whose sentences are sent")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients, one phase each")
    p.add_argument("--sentences", type=int, default=800, help="requests per phase (one sentence each)")
    p.add_argument("--max_seconds", type=float, default=120, help="a phase stops sending after this long")
    p.add_argument("--threads", type=int, default=2, help="the server's CPU math threads (and the ceiling's)")
    p.add_argument("--batch_wait_ms", type=float, default=5.0, help="serve.py --batch_wait_ms")
    p.add_argument("--memory_requests", type=int, default=3000,
                   help="extra requests of varied lengths (1-16 sentences) to watch the server's memory over")
    p.add_argument("--attack_clients", type=int, default=16, help="well-behaved clients in the attack phases")
    p.add_argument("--attack_requests", type=int, default=600,
                   help="requests the good clients send per attack phase (one sentence each)")
    p.add_argument("--attack_seconds", type=float, default=60, help="an attack phase stops after this long")
    p.add_argument("--slow_connections", type=int, default=100, help="attack (a): stalled connections kept open")
    p.add_argument("--hang_ups_per_s", type=float, default=200, help="attack (b): requests sent and abandoned a second")
    p.add_argument("--maximal_every_s", type=float, default=1.0, help="attack (c): seconds between maximal requests")
    p.add_argument("--output", default=os.path.join(REPO, "results", "serve_cpu.json"), help="results JSON")
    return p.parse_args(argv)


def post(port, texts):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/predict", body=json.dumps({"texts": texts}, ensure_ascii=False).encode(),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    try:
        return response.status, json.loads(body.decode())
    except ValueError:  # uvicorn's own refusals are plain text
        return response.status, {"error": body[:60].decode(errors="replace")}


def start_server(args):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "serve.py"), "--model_dir", args.model_dir,
                             "--port", str(port), "--threads", str(args.threads), "--batch_wait_ms",
                             str(args.batch_wait_ms), "--max_texts", str(SERVE_MAX_TEXTS),
                             "--max_text_chars", str(SERVE_MAX_TEXT_CHARS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UserError(f"serve.py exited with {proc.returncode}; run it by hand to see why")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise UserError("serve.py did not answer /health within 180 s")


class Attack(threading.Thread):
    """One misbehaving kind of client, running until ``stop`` is set; ``outcomes`` counts what it got."""

    def __init__(self, kind, port, args, sentences):
        super().__init__(daemon=True)
        self.kind, self.port, self.args, self.sentences = kind, port, args, sentences
        self.stop, self.outcomes = threading.Event(), collections.Counter()

    def run(self):
        getattr(self, self.kind)()

    def _connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def slow_bodies(self):
        """Keep --slow_connections connections that sent their headers and 8 of 100 body bytes, then stalled."""
        open_socks = []
        while not self.stop.is_set():
            while len(open_socks) < self.args.slow_connections and not self.stop.is_set():
                try:
                    s = self._connect()
                    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{\"texts\"")
                    open_socks.append(s)
                    self.outcomes["opened"] += 1
                except OSError:
                    self.outcomes["connect_failed"] += 1
                    break
            readable, _, _ = select.select(open_socks, [], [], 0.2) if open_socks else ([], [], [])
            for s in readable:  # the server answered (408) or closed: open another in its place
                try:
                    head = s.recv(64)
                except OSError:
                    head = b""
                self.outcomes[head[9:12].decode(errors="replace") if head.startswith(b"HTTP/1.1 ") else "closed"] += 1
                s.close()
                open_socks.remove(s)
        for s in open_socks:
            s.close()

    def hang_ups(self):
        """--hang_ups_per_s clients a second: a request of 8 sentences sent in full, then the connection closed."""
        body = json.dumps({"texts": self.sentences[:8]}, ensure_ascii=False).encode()
        request = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        interval, next_at = 1.0 / self.args.hang_ups_per_s, time.perf_counter()
        while not self.stop.is_set():
            try:
                with self._connect() as s:
                    s.sendall(request)
                self.outcomes["sent_and_left"] += 1
            except OSError:
                self.outcomes["connect_failed"] += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def maximal_requests(self):
        """Every --maximal_every_s seconds, a new request of serve.py's largest allowed size, its answer awaited."""
        text = "".join(self.sentences)
        text = (text * (1 + SERVE_MAX_TEXT_CHARS // len(text)))[:SERVE_MAX_TEXT_CHARS]
        texts = [text] * SERVE_MAX_TEXTS
        threads = []

        def one():
            try:
                status, _ = post(self.port, texts)
                self.outcomes[str(status)] += 1
            except OSError as error:
                self.outcomes[type(error).__name__] += 1

        while not self.stop.is_set():
            thread = threading.Thread(target=one, daemon=True)
            thread.start()
            threads.append(thread)
            self.outcomes["sent"] += 1
            self.stop.wait(self.args.maximal_every_s)
        for thread in threads:
            thread.join(timeout=0.1)


SERVE_MAX_TEXTS, SERVE_MAX_TEXT_CHARS = 64, 10000  # the server is started with these request limits


def attack_phases(port, proc, sentences, args):
    """The good clients alone, then under each attack; their numbers, the attackers' outcomes, the server's RSS."""
    good = (sentences * (1 + args.attack_requests // len(sentences)))[:args.attack_requests]
    phases = []
    for kind in (None, "slow_bodies", "hang_ups", "maximal_requests"):
        attack = Attack(kind, port, args, sentences) if kind else None
        if attack:
            attack.start()
            time.sleep(2)  # the attack is under way before the good clients start
        phase, _ = run_phase(port, good, args.attack_clients, args.attack_seconds)
        if attack:
            attack.stop.set()
            attack.join(timeout=30)
        phase.update(attack=kind or "none", attacker_outcomes=dict(attack.outcomes) if attack else {},
                     server_rss_mib=rss_mib(proc.pid))
        if phases:
            phase["p99_vs_alone"] = round(phase["p99_ms"] / phases[0]["p99_ms"], 2)
        phases.append(phase)
        logger.info("attack %s: %d good requests, %d errors, p50 %.1f ms, p99 %.1f ms%s, server RSS %.0f MiB | "
                    "attacker got %s", phase["attack"], phase["requests"], phase["errors"], phase["p50_ms"],
                    phase["p99_ms"], f" ({phase['p99_vs_alone']}x alone)" if "p99_vs_alone" in phase else "",
                    phase["server_rss_mib"], phase["attacker_outcomes"])
        time.sleep(3)  # what an attack left behind drains before the next phase
    return phases


def rss_mib(pid):
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def run_phase(port, sentences, clients, max_seconds):
    """``clients`` threads share ``sentences`` (one a request); returns the phase's numbers and answers."""
    latencies, answers, errors = [], {}, 0
    stop_at = time.perf_counter() + max_seconds

    failures = collections.Counter()

    def one(index):
        if time.perf_counter() > stop_at:
            return index, None, None
        start = time.perf_counter()
        try:
            status, data = post(port, [sentences[index]])
        except (OSError, http.client.HTTPException) as error:
            failures[type(error).__name__] += 1
            return index, time.perf_counter() - start, None
        if status != 200:
            failures[f"{status} {data.get('error', '')[:60]}"] += 1
        return index, time.perf_counter() - start, data["results"][0]["entities"] if status == 200 else None

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for index, seconds, entities in pool.map(one, range(len(sentences))):
            if seconds is None:
                continue
            latencies.append(seconds)
            if entities is None:
                errors += 1
            else:
                answers[index] = entities
    wall = time.perf_counter() - started
    done = sorted(answers)
    chars = sum(len(sentences[i]) for i in done)
    return {"clients": clients, "requests": len(latencies), "errors": errors, "error_kinds": dict(failures), "seconds": round(wall, 2),
            "texts_per_s": round(len(done) / wall, 1), "chars_per_s": round(chars / wall),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * sorted(latencies)[max(0, int(0.99 * len(latencies)) - 1)], 1)}, answers


def build_msra_shape_model(args):
    """A width-0.5 cut of a 2-layer, 192-hidden, 12-head BERT with random weights, exported by stage 3
    (export_model_msra_ner_ofa.py)."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForTokenClassification

    raw = model_io.write_init_dir(os.path.join(args.work_dir, "init"), args.bert_dir, num_layers=2, hidden_size=192,
                                  num_heads=12, intermediate_size=768,
                                  vocab_from=os.path.join(os.path.dirname(args.data_file), "train.tsv"))
    config = BertConfig(**{k: raw[k] for k in model_io.BERT_CONFIG_FIELDS}, num_labels=len(MSRA_LABELS))
    paddle.seed(0)
    model = BertForTokenClassification(config)
    supernet_dir = os.path.join(args.work_dir, "model_0.5")
    model_io.save_model_dir(supernet_dir, config, model.state_dict(),
                            model_io.load_tokenizer(os.path.join(args.work_dir, "init")),
                            {"kind": "supernet", "labels": MSRA_LABELS, "max_seq_length": 128,
                             "width_mult_list": [1.0, 0.5], "width_mult": 0.5})
    stages.run_stage("export_model_msra_ner_ofa.py", [
        "--model_name_or_path", supernet_dir, "--width_mult", "0.5", "--device", "cpu",
        "--sub_model_output_dir", os.path.join(args.work_dir, "sub_model"),
        "--static_sub_model", os.path.join(args.work_dir, "static", "model")])
    return os.path.join(args.work_dir, "static")


def main(args):
    cli.setup_logging()
    if not os.path.isfile(args.data_file):
        raise UserError(f"{args.data_file}: not found")
    if args.model_dir is None:
        args.model_dir = build_msra_shape_model(args)
        model_shape = "width 0.5 of a 2-layer, 192-hidden BERT, random weights (built by this script)"
    else:
        model_shape = os.path.relpath(os.path.abspath(args.model_dir), REPO)
    sentences = ["".join(ex["chars"]) for ex in read_ner_file(args.data_file)][:args.sentences]
    ner = NerPredictor(args.model_dir, threads=args.threads)
    model_info = ner.model_info
    ner(sentences[:32])  # warm-up
    start = time.perf_counter()
    ceiling_answers = ner(sentences)
    ceiling_seconds = time.perf_counter() - start
    chars = sum(len(s) for s in sentences)
    ceiling = {"texts_per_s": round(len(sentences) / ceiling_seconds, 1), "chars_per_s": round(chars / ceiling_seconds),
               "seconds": round(ceiling_seconds, 2), "what": "predict.py's code path in-process, all texts in one call"}
    logger.info("in-process ceiling: %d texts in %.2f s (%.0f texts/s)", len(sentences), ceiling_seconds,
                ceiling["texts_per_s"])

    proc, port = start_server(args)
    phases, memory = [], [{"after_requests": 0, "rss_mib": rss_mib(proc.pid)}]
    try:
        post(port, sentences[:8])  # warm-up
        served = 0
        for clients in args.clients:
            phase, answers = run_phase(port, sentences, clients, args.max_seconds)
            mismatches = sum(answers[i] != ceiling_answers[i] for i in answers)
            served += phase["requests"]
            phase.update(answers_differing_from_predict=mismatches, server_rss_mib=rss_mib(proc.pid))
            memory.append({"after_requests": served, "rss_mib": phase["server_rss_mib"]})
            phases.append(phase)
            logger.info("%2d clients: %d requests, %d errors, %.1f texts/s, %d chars/s, p50 %.1f ms, p99 %.1f ms, "
                        "server RSS %.0f MiB", clients, phase["requests"], phase["errors"], phase["texts_per_s"],
                        phase["chars_per_s"], phase["p50_ms"], phase["p99_ms"], phase["server_rss_mib"])
        # varied lengths: 1-16 sentences a request, so the model sees many batch shapes
        for k in range(args.memory_requests):
            n = 1 + (k * 7) % 16
            start = (k * 13) % max(1, len(sentences) - n)
            status, _ = post(port, sentences[start:start + n])
            served += 1
            if status != 200:
                raise UserError(f"request {k} of the memory run got {status}")
            if (k + 1) % 500 == 0:
                memory.append({"after_requests": served, "rss_mib": rss_mib(proc.pid)})
                logger.info("memory: %d requests, server RSS %.0f MiB", served, memory[-1]["rss_mib"])
        attacks = attack_phases(port, proc, sentences, args)
        memory.append({"after_requests": served, "after": "attack phases", "rss_mib": rss_mib(proc.pid)})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    result = {
        "command": "python " + " ".join([os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + sys.argv[1:]),
        "hardware": hardware(),
        "model": dict({k: model_info.get(k) for k in ("kind", "width_mult", "num_heads", "intermediate_size",
                                                      "parameters")}, what=model_shape),
        "workload": {"file": os.path.basename(args.data_file), "sentences": len(sentences), "characters": chars,
                     "request": "one sentence per request, N clients concurrently, keep-alive off",
                     "threads": args.threads, "batch_wait_ms": args.batch_wait_ms},
        "in_process_ceiling": ceiling, "phases": phases, "server_memory": memory,
        "attack_workload": {"good_clients": args.attack_clients, "good_requests": args.attack_requests,
                            "max_seconds": args.attack_seconds, "slow_connections": args.slow_connections,
                            "hang_ups_per_s": args.hang_ups_per_s, "maximal_every_s": args.maximal_every_s,
                            "maximal_request": f"{SERVE_MAX_TEXTS} texts x {SERVE_MAX_TEXT_CHARS} characters",
                            "server": "serve.py's defaults (timeouts, queue, connection limit)"},
        "attack_phases": attacks,
    }
    model_io.write_json(args.output, result)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
