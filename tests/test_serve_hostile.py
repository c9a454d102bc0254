"""serve.py against clients that misbehave: the app and its uvicorn limits on a loopback port, in this process, in
front of a stand-in model whose calls take a set time and are recorded -- so what the model did for whom is
counted, not timed. Every client loop is bounded in count and time."""
import argparse
import concurrent.futures
import http.client
import json
import socket
import queue
import threading
import time

import numpy as np
import pytest
from conftest import fake_tokenizer

from ner_ofa.tools import serve
from ner_ofa.features import CharEncoder, make_windows
from ner_ofa.labelling import predict_entities

CHARS = "王伟在北京李娜上海"
LABELS = ["O", "B-PER", "I-PER"]


class SlowModel:
    """logits_fn stand-in: sleeps ``delay`` seconds a call, records the token ids of each call; a text holding
    ``fail_char`` makes the call raise."""

    def __init__(self, delay, fail_id=None):
        self.delay, self.fail_id, self.calls = delay, fail_id, []

    def __call__(self, input_ids):
        self.calls.append(input_ids.copy())
        time.sleep(self.delay)
        if self.fail_id is not None and (input_ids == self.fail_id).any():
            raise RuntimeError("model failure")
        logits = np.zeros((*input_ids.shape, len(LABELS)), dtype=np.float32)
        logits[..., 0] = 1.0
        return logits

    def windows_with(self, char_id):
        return sum(int((call == char_id).any(axis=1).sum()) for call in self.calls)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start():
    """start(model, **flags) -> (port, labeller, encoder): a server on 127.0.0.1 until the test ends."""
    import uvicorn

    servers = []

    def _start(model, **flags):
        argv = ["--model_dir", "unused", "--max_seq_length", "10", "--batch_size", "2", "--batch_wait_ms", "1"]
        for key, value in flags.items():
            argv += [f"--{key}", str(value)]
        args = serve.parse_args(argv)
        encoder = CharEncoder(fake_tokenizer(*CHARS))
        labeller = serve.FairLabeller(model, encoder, LABELS, args.max_seq_length, args.batch_size,
                                      args.max_batch_texts, args.batch_wait_ms / 1000, args.max_queue,
                                      args.max_queued_windows)
        port = free_port()
        config = uvicorn.Config(serve.create_app(args, labeller), host="127.0.0.1", port=port, log_level="error",
                                **serve.uvicorn_limits(args))
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started
        servers.append((server, thread))
        return port, labeller, encoder

    yield _start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=20)


def post(port, texts, timeout=30, raw=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = raw if raw is not None else json.dumps({"texts": texts}, ensure_ascii=False).encode()
    conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = json.loads(response.read().decode() or "null")
    conn.close()
    return response.status, data, dict(response.getheaders())


def health(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    data = json.loads(conn.getresponse().read().decode())
    conn.close()
    return data


def send_and_hang_up(port, texts):
    body = json.dumps({"texts": texts}, ensure_ascii=False).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)


def wait_until(condition, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def running(pool, port, model, texts, calls=1):
    """A request sent from ``pool``, its future returned once the model has made ``calls`` calls."""
    future = pool.submit(post, port, texts)
    assert wait_until(lambda: len(model.calls) >= calls)
    return future


def test_clients_that_hang_up_cost_no_model_time(start):
    model = SlowModel(0.2)
    port, labeller, encoder = start(model)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        big = running(pool, port, model, ["王伟在北京" * 8])  # 40 characters: 9 windows, 5 calls
        for _ in range(5):
            send_and_hang_up(port, ["李娜"])
        assert wait_until(lambda: health(port)["disconnects"] == 5)
        status, data, _ = post(port, ["上海"])
        assert status == 200 and data["results"][0]["text"] == "上海"
        assert big.result()[0] == 200
    assert model.windows_with(encoder.char_id("李")) == 0  # the five that left were never labelled
    assert health(port)["dropped"] == 5 and labeller.pending_requests == 0


def test_a_large_request_holds_the_model_for_one_call_at_a_time(start):
    model = SlowModel(0.05)
    port, labeller, encoder = start(model)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        big = running(pool, port, model, ["王伟在北京" * 40], calls=2)  # 200 characters: 49 windows, 25 calls
        calls_before = len(model.calls)
        status, _, _ = post(port, ["李娜"])
        calls_for_small = len(model.calls) - calls_before
        assert status == 200 and not big.done()
        assert big.result()[0] == 200
    # the small request waited for at most the large request's call in progress and one more, then its own
    assert calls_for_small <= 3, calls_for_small
    assert len(model.calls) == 26


def test_answers_under_interleaving_equal_labelling_alone(start):
    """Slicing and grouping do not change any answer: the same texts alone, through predict_entities."""
    rng = np.random.RandomState(0)
    weights = rng.standard_normal((len(CHARS) + 5, len(LABELS))).astype(np.float32)

    def model(ids):
        time.sleep(0.01)
        return weights[ids] + 0.1 * np.roll(weights[ids], 1, axis=1)

    port, labeller, encoder = start(model)
    texts = ["".join(rng.choice(list(CHARS), size=n)) for n in (3, 9, 17, 40, 5, 70, 2, 11)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: post(port, [t, t[::-1]]), texts))
    for text, (status, data, _) in zip(texts, answers):
        expected = predict_entities(model, [text, text[::-1]], encoder, LABELS, 10, 2)
        assert status == 200 and [r["entities"] for r in data["results"]] == expected
    assert any(r["entities"] for _, data, _ in answers for r in data["results"])


def test_deadline_gives_504_and_drops_the_rest(start):
    model = SlowModel(0.2)
    port, labeller, _ = start(model, request_timeout=0.5)
    status, data, _ = post(port, ["王伟在北京" * 8])  # 5 calls of 0.2 s
    assert status == 504 and "no answer within 0.5 s" in data["error"]
    assert wait_until(lambda: labeller.pending_requests == 0)
    assert len(model.calls) <= 4 and health(port)["timeouts"] == 1


def test_full_queue_gets_503_with_retry_after(start):
    model = SlowModel(0.3)
    port, labeller, _ = start(model, max_queue=2)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: post(port, ["王伟"]), range(4)))
    statuses = sorted(a[0] for a in answers)
    assert statuses.count(503) >= 1 and statuses.count(200) >= 2
    busy = next(a for a in answers if a[0] == 503)
    assert busy[2].get("retry-after") == "1" and "retry later" in busy[1]["error"]


def test_large_requests_beyond_the_window_budget_get_503_small_ones_still_pass(start):
    model = SlowModel(0.1)
    port, labeller, _ = start(model, max_queued_windows=20)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = running(pool, port, model, ["王伟在北京" * 12])  # 13 windows
        second = post(port, ["王伟在北京" * 12])
        small = post(port, ["王伟"])
        assert second[0] == 503 and small[0] == 200 and first.result()[0] == 200


def test_a_request_within_its_share_of_the_window_budget_is_admitted_when_it_is_full(start):
    model = SlowModel(0.1)
    port, labeller, _ = start(model, max_queued_windows=20, max_queue=4)  # share: 5 windows
    assert labeller.fair_share == 5
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = running(pool, port, model, ["王伟在北京" * 12])  # 13 windows
        assert post(port, ["王伟在北京" * 12])[0] == 503  # 13 windows: over its share, the budget full
        assert post(port, ["王伟在北京" * 4])[0] == 200  # 4 windows: more than one call, within its share
        assert first.result()[0] == 200


def test_model_failure_is_500_and_the_next_request_is_answered(start):
    model = SlowModel(0.0, fail_id=None)
    port, labeller, encoder = start(model)
    model.fail_id = encoder.char_id("娜")
    status, data, _ = post(port, ["李娜"])
    assert status == 500 and "labelling failed (RuntimeError)" in data["error"]
    assert post(port, ["王伟"])[0] == 200


def test_slow_body_gets_408_and_its_connection_is_closed(start):
    port, _, _ = start(SlowModel(0.0), body_timeout=1)
    started = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                  b'{"texts"')
        received = b""
        while time.time() - started < 8:
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in received
    assert time.time() - started < 8  # closed by the server, not by our bound


@pytest.mark.parametrize("behaviour", ["silent", "slow_headers"])
def test_connections_that_send_no_request_are_closed(start, behaviour):
    port, _, _ = start(SlowModel(0.0), idle_timeout=1)
    started = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(0.3)
        closed = False
        for k in range(25):  # at most 25 x 0.3 s
            if behaviour == "slow_headers":
                try:
                    s.sendall(b"POST /predict HTTP/1.1\r\n"[k:k + 1] or b"X")
                except OSError:
                    closed = True
                    break
            try:
                if s.recv(1024) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    assert closed and time.time() - started < 4
    assert post(port, ["王伟"])[0] == 200


def test_chunked_bodies_are_read_and_limited(start):
    port, _, _ = start(SlowModel(0.0), max_texts=2, max_text_chars=20)

    def chunked(payload):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            for k in range(0, len(payload), 7):
                piece = payload[k:k + 7]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            received = b""
            for _ in range(100):
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            return received

    ok = chunked(json.dumps({"texts": ["王伟在北京"]}, ensure_ascii=False).encode())
    assert ok.startswith(b"HTTP/1.1 200") and "王伟在北京".encode() in ok
    limit = serve.body_limit(2, 20)
    too_big = chunked(b'{"texts": ["' + b"a" * limit + b'"]}')
    assert too_big.startswith(b"HTTP/1.1 413") and b"a body over" in too_big


def test_body_limit_admits_the_largest_valid_request_escaped(start):
    """64 x 10,000 emoji (outside the BMP) escaped by json.dumps: each one 12 bytes; scaled down here."""
    port, _, _ = start(SlowModel(0.0), max_texts=3, max_text_chars=200)
    raw = json.dumps({"texts": ["\U0001F600" * 200] * 3}).encode()  # ensure_ascii: \ud83d\ude00 per emoji
    assert len(raw) > 3 * (200 * 6 + 8) + 1024  # what the old limit allowed
    status, data, _ = post(port, None, raw=raw)
    assert status == 200 and data["results"][0]["text"] == "\U0001F600" * 200


def test_a_worker_that_cannot_load_the_model_stops_the_server(monkeypatch, capsys):
    from uvicorn.config import STARTUP_FAILURE

    monkeypatch.setenv(serve.CONFIG_ENV, json.dumps({"model_dir": "x"}))

    def broken(args, labeller=None):
        raise OSError("disk gone")

    monkeypatch.setattr(serve, "create_app", broken)
    with pytest.raises(SystemExit) as exit_info:
        serve.app_from_env()
    # uvicorn's supervisor stops the server on this code instead of restarting the worker in a loop
    assert exit_info.value.code == STARTUP_FAILURE == 3
    assert "could not be loaded (OSError: disk gone)" in capsys.readouterr().err


def test_flags_that_must_be_positive():
    with pytest.raises(serve.UserError, match="--request_timeout must be positive"):
        serve.main(serve.parse_args(["--model_dir", "x", "--request_timeout", "0"]))


def test_defaults_admit_a_maximal_request(monkeypatch):
    """The labeller load_labeller builds from the default flags takes a request of --max_texts texts of
    --max_text_chars characters (even with another one queued) and answers it."""
    from ner_ofa import predictor

    tokenizer = fake_tokenizer(*CHARS)
    monkeypatch.setattr(predictor, "load_logits_fn", lambda *a, **k: (SlowModel(0.0), tokenizer,
                                                                      {"labels": LABELS, "max_seq_length": 128}))
    args = serve.parse_args(["--model_dir", "x"])
    labeller = serve.load_labeller(args)
    maximal = ["王伟" * (args.max_text_chars // 2)] * args.max_texts
    answers = queue.Queue()
    labeller.submit(maximal, answers.put)
    labeller.submit(maximal, answers.put)  # a second one waits beside it
    for _ in range(2):
        result = answers.get(timeout=120)
        assert not isinstance(result, Exception), result
        assert len(result) == args.max_texts and all(isinstance(entities, list) for entities in result)


def test_large_requests_take_turns(start):
    model = SlowModel(0.02)
    port, _, encoder = start(model)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = running(pool, port, model, ["王伟" * 40])  # 19 windows, 10 calls
        second = pool.submit(post, port, ["李娜" * 40])
        assert first.result()[0] == 200 and second.result()[0] == 200
    owner = ["first" if (call == encoder.char_id("王")).any() else "second" for call in model.calls]
    # the second request started long before the first one's last call
    assert owner.index("second") < len(owner) - 1 - owner[::-1].index("first") - 3, owner


def test_device_flag_reaches_the_model(monkeypatch):
    """serve.py --device: the model copy is loaded on it (here a CPU-only Paddle: the one-line GPU error)."""
    import paddle

    from ner_ofa import predictor

    seen = {}

    def fake_load(model_dir, device, *rest):
        seen["device"] = device
        return SlowModel(0.0), fake_tokenizer(*CHARS), {"labels": LABELS, "max_seq_length": 128}

    monkeypatch.setattr(predictor, "load_logits_fn", fake_load)
    serve.load_labeller(serve.parse_args(["--model_dir", "x", "--device", "cpu"]))
    assert seen["device"] == "cpu"
    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA: the CPU-only refusal cannot be shown")
    with pytest.raises(serve.UserError, match="--device gpu: this Paddle is the CPU-only build"):
        serve.load_labeller(serve.parse_args(["--model_dir", "x", "--device", "gpu"]))
