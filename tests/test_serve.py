"""serve.py for real: a server process on a free loopback port, real HTTP requests (good and bad), then stopped."""
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import export_model_msra_ner_ofa as export_stage
from ner_ofa.tools import predict
from conftest import REPO, export_args

TEXTS = ["三月五日，王伟在北京的人民银行会见了李娜。", "", "李娜去了上海。" * 30, "Ａpple 公司\u2028在北京"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    payload = raw if raw is not None else (json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read().decode())
    conn.close()
    return response.status, data


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve")
    export_stage.main(export_args(trained["model_0.5"], str(out)))
    static_dir = str(out / "static")
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "serve.py"), "--model_dir", static_dir, "--port",
                             str(port), "--max_texts", "8", "--max_text_chars", "500", "--batch_wait_ms", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
    yield {"port": port, "static_dir": static_dir, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


def test_answers_equal_predict(server):
    status, data = request(server["port"], "POST", "/predict", {"texts": TEXTS})
    assert status == 200
    expected = predict.main(predict.parse_args(["--model_dir", server["static_dir"], *sum((["--text", t] for t in TEXTS), [])]))
    assert [r["text"] for r in data["results"]] == TEXTS
    assert [r["entities"] for r in data["results"]] == expected
    assert any(r["entities"] for r in data["results"])


@pytest.mark.parametrize("raw, status, message", [
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[1, 2]", 422, "expected a JSON object"),
    (b'{"text": "a"}', 422, "expected a JSON object"),
    (b'{"texts": "abc"}', 422, "must be a list of strings"),
    (b'{"texts": ["a", 3]}', 422, "must be a list of strings"),
    (b'{"texts": []}', 422, "is empty"),
    (b'{"texts": ["a"], "extra": 1}', 422, "unknown field"),
    (json.dumps({"texts": ["长" * 501]}).encode(), 413, "at most 500"),
    (json.dumps({"texts": ["a"] * 9}).encode(), 413, "at most 8"),
    (b"[" * 5000, 400, "not JSON"),  # nested past Python's recursion limit
    (b'{"texts": ["\\ud800"]}', 422, "lone surrogate"),
    (b'{"texts": ["a"]}' + b" " * 60000, 413, "bytes; at most"),  # refused before it is all read (limit 49,088)
])
def test_bad_requests_get_4xx_and_the_server_goes_on(server, raw, status, message):
    got, data = request(server["port"], "POST", "/predict", raw=raw)
    assert got == status and message in data["error"]
    ok, data = request(server["port"], "POST", "/predict", {"texts": ["王伟在北京"]})
    assert ok == 200 and data["results"][0]["text"] == "王伟在北京"


def test_concurrent_requests_are_batched_and_answered_right(server):
    texts = [f"{name}在{place}工作。" for name in ("王伟", "李娜", "张三", "赵六") for place in ("北京", "上海", "广州")]
    expected = predict.main(predict.parse_args(["--model_dir", server["static_dir"], *sum((["--text", t] for t in texts), [])]))
    _, before = request(server["port"], "GET", "/health")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda t: request(server["port"], "POST", "/predict", {"texts": [t]}), texts))
    assert [a[0] for a in answers] == [200] * len(texts)
    assert [a[1]["results"][0]["text"] for a in answers] == texts  # each client got the answer to its own text
    assert [a[1]["results"][0]["entities"] for a in answers] == expected
    _, after = request(server["port"], "GET", "/health")
    assert after["requests"] - before["requests"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts)  # some requests shared a model pass


def test_health(server):
    status, data = request(server["port"], "GET", "/health")
    assert status == 200 and data["status"] == "ok" and data["kind"] == "static" and data["width_mult"] == 0.5


def test_load_test_script_with_its_attack_phases(server, trained, tmp_path):
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import load_test_serve

    out = tmp_path / "serve.json"
    result = load_test_serve.main(load_test_serve.parse_args([
        "--model_dir", server["static_dir"], "--data_file", os.path.join(trained["data_dir"], "test.tsv"),
        "--clients", "2", "--sentences", "20", "--memory_requests", "0", "--attack_clients", "2",
        "--attack_requests", "30", "--attack_seconds", "8", "--slow_connections", "5", "--hang_ups_per_s", "20",
        "--maximal_every_s", "1", "--output", str(out)]))
    phases = {p["attack"]: p for p in result["attack_phases"]}
    assert list(phases) == ["none", "slow_bodies", "hang_ups", "maximal_requests"]
    assert all(p["errors"] == 0 and p["requests"] == 30 for p in phases.values()), phases
    assert phases["slow_bodies"]["attacker_outcomes"]["opened"] >= 5
    assert phases["hang_ups"]["attacker_outcomes"]["sent_and_left"] >= 20
    assert phases["maximal_requests"]["attacker_outcomes"]["sent"] >= 1
    assert json.loads(out.read_text())["attack_phases"][1]["p99_vs_alone"] > 0


def test_load_test_builds_its_model_with_stage_3(tiny_demo, tmp_path):
    """Without --model_dir the load test makes its width-0.5 model: a config-only directory with the vocabulary cut
    to train's characters, random weights, then export_model_msra_ner_ofa.py run as a user runs it."""
    import argparse

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import load_test_serve
    from ner_ofa import model_io

    bert_dir = tmp_path / "bert"  # the demo's vocabulary plus entries train never uses: the cut must drop them
    shutil.copytree(tiny_demo["model_dir"], bert_dir)
    unused = ["龘", "齉", "爨"]
    with open(bert_dir / "vocab.txt", "a", encoding="utf-8") as handle:
        handle.write("".join(token + "\n" for token in unused))
    static_dir = load_test_serve.build_msra_shape_model(argparse.Namespace(
        work_dir=str(tmp_path / "w"), bert_dir=str(bert_dir),
        data_file=os.path.join(tiny_demo["data_dir"], "test.tsv")))
    info = model_io.read_json(os.path.join(static_dir, "model_info.json"))
    assert (info["kind"], info["width_mult"], info["num_heads"], info["intermediate_size"]) == ("static", 0.5, 6, 384)
    assert info["parameters"] < info["supernet_parameters"]
    train_chars = {c for line in open(os.path.join(tiny_demo["data_dir"], "train.tsv"), encoding="utf-8")
                   for c in line.split("\t")[0].split("\u0002")}
    vocab = model_io.load_tokenizer(static_dir).vocab
    assert len(vocab) <= len(train_chars) + 5  # the specials and train's characters
    assert not any(token in vocab for token in unused)
