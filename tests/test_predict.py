"""predict.py's text handling with a fake model: offsets on mixed text, long texts, output schema."""
import io
import json

import numpy as np
from conftest import fake_tokenizer

from ner_ofa.tools import predict
from ner_ofa.features import CharEncoder
from ner_ofa.labelling import predict_entities, predict_label_ids
from ner_ofa import cli

LABELS = ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


FakeTokenizer = fake_tokenizer(*"公司北京在年月a1")
RULE_SCORE = round(float(np.e / (np.exp(0.5) + 3 + np.e)), 4)  # softmax of the rule's 1.0 against O's 0.5 and three 0s


def rule_model(encoder, margin=0):
    """'公' 'sets' B-ORG, '司' I-ORG; '北' B-LOC, '京' I-LOC; the ``margin`` tokens at window edges are O."""
    ids = encoder.token_to_id
    rule = {ids["公"]: 1, ids["司"]: 2, ids["北"]: 3, ids["京"]: 4}

    def run(input_ids):
        logits = np.zeros(input_ids.shape + (len(LABELS),), dtype="float32")
        logits[..., 0] = 0.5
        for row, seq in enumerate(input_ids):
            n = int((seq > 3).sum() + (seq == 1).sum())
            for pos in range(1, n + 1):
                if margin <= pos - 1 < n - margin and int(seq[pos]) in rule:
                    logits[row, pos, rule[int(seq[pos])]] = 1.0
        return logits
    return run


def test_offsets_on_mixed_text():
    enc = CharEncoder(FakeTokenizer)
    text = "Ａpple公司 2024年在北京，ｘ１ 北京 abc公司"
    [entities] = predict_entities(rule_model(enc), [text], enc, LABELS, max_seq_length=64, batch_size=4)
    assert [(e["type"], e["text"]) for e in entities] == [("ORG", "公司"), ("LOC", "北京"), ("LOC", "北京"), ("ORG", "公司")]
    for e in entities:
        assert text[e["start"]:e["end"]] == e["text"]
    assert entities[0]["start"] == text.index("公司")


def test_long_text_entities_near_window_edges_survive():
    enc = CharEncoder(FakeTokenizer)
    text = ("在" * 7 + "北京" + "在" * 5 + "公司") * 40 + "在" * 3  # 643 characters, windows of 14
    [entities] = predict_entities(rule_model(enc, margin=3), [text], enc, LABELS, max_seq_length=16,
                                        batch_size=8)
    assert len(entities) == 80
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def use_rule_model(monkeypatch):
    """predict.main with the rule model instead of a model directory."""
    enc = CharEncoder(FakeTokenizer)
    from ner_ofa import predictor

    monkeypatch.setattr(predictor, "load_logits_fn", lambda *a, **k: (rule_model(enc), FakeTokenizer,
                                                                      {"labels": LABELS, "max_seq_length": 32}))


def test_predict_json_lines_schema_and_empty_lines(monkeypatch, capsys, tmp_path):
    use_rule_model(monkeypatch)
    path = tmp_path / "in.txt"
    path.write_text("北京公司\n\n在\n", encoding="utf-8")
    predict.main(predict.parse_args(["--model_dir", "x", "--input_file", str(path)]))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["北京公司", "", "在"]
    assert lines[0]["entities"] == [{"type": "LOC", "text": "北京", "start": 0, "end": 2, "score": RULE_SCORE},
                                    {"type": "ORG", "text": "公司", "start": 2, "end": 4, "score": RULE_SCORE}]
    assert lines[1]["entities"] == [] and lines[2]["entities"] == []
    monkeypatch.setattr("sys.stdin", io.StringIO("北京\n"))
    predict.main(predict.parse_args(["--model_dir", "x", "--format", "plain"]))
    assert f"LOC\t0\t2\t{RULE_SCORE:.4f}\t北京" in capsys.readouterr().out


def test_empty_input_file_is_an_error(monkeypatch, tmp_path):
    import pytest

    use_rule_model(monkeypatch)
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(cli.UserError, match="no text to label"):
        predict.main(predict.parse_args(["--model_dir", "x", "--input_file", str(path)]))


def test_100k_character_line_and_control_characters():
    enc = CharEncoder(FakeTokenizer)
    text = ("\x00北京\t\u200b公司 " * 12500)  # 100,000 characters with control and zero-width characters
    assert len(text) == 100000
    [ids] = [enc.encode(list(text))]
    assert len(ids) == 100000
    [pred] = predict_label_ids(rule_model(enc), [ids], enc, max_seq_length=128, batch_size=64)
    assert len(pred) == 100000
    [entities] = predict_entities(rule_model(enc), [text], enc, LABELS, 128, 64)
    assert len(entities) == 25000 and all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def test_plain_format_is_what_the_docstring_says(monkeypatch, capsys):
    use_rule_model(monkeypatch)
    predict.main(predict.parse_args(["--model_dir", "x", "--format", "plain", "--text", "在北京", "--text", "公司在"]))
    score = f"{RULE_SCORE:.4f}"
    assert capsys.readouterr().out == f"在北京\n  LOC\t1\t3\t{score}\t北京\n公司在\n  ORG\t0\t2\t{score}\t公司\n"
    doc = " ".join(predict.__doc__.split())
    assert ('--format plain is for reading, not parsing: each text on a line of its own, then one line per entity, '
            'two spaces and "TYPE<TAB>start<TAB>end<TAB>score<TAB>text"') in doc


def test_a_byte_order_mark_is_not_part_of_the_first_text(monkeypatch, capsys, tmp_path):
    use_rule_model(monkeypatch)
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff北京公司\r\n北京\r\n".encode("utf-8"))
    for source in (["--input_file", str(path)], []):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8"))
        predict.main(predict.parse_args(["--model_dir", "x", *source]))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["text"] for line in lines] == ["北京公司", "北京"], source
        assert lines[0]["entities"][0] == {"type": "LOC", "text": "北京", "start": 0, "end": 2, "score": RULE_SCORE}


def test_help_shows_the_line_separator_as_written(capsys):
    import pytest

    with pytest.raises(SystemExit):
        predict.parse_args(["--help"])
    out = capsys.readouterr().out
    assert r'split on "\n" only (a trailing "\r" is dropped)' in " ".join(out.split())
    assert "\r" not in out


def test_entity_score_is_the_mean_probability_of_its_characters_labels():
    """Hand-made probabilities: 北 B-LOC 0.6, 京 I-LOC 0.8 -> LOC 北京 scored 0.7; 公 B-ORG 0.5, 司 I-ORG 0.35 -> 0.425."""
    enc = CharEncoder(FakeTokenizer)
    ids = enc.token_to_id
    rows = {ids["北"]: [0.2, 0.05, 0.05, 0.6, 0.1], ids["京"]: [0.1, 0.05, 0.025, 0.025, 0.8],
            ids["公"]: [0.3, 0.5, 0.1, 0.05, 0.05], ids["司"]: [0.3, 0.2, 0.35, 0.1, 0.05]}

    def logits_fn(input_ids):
        probs = np.full(input_ids.shape + (len(LABELS),), 0.025, dtype="float64")
        probs[..., 0] = 0.9
        for (row, pos), token in np.ndenumerate(input_ids):
            if int(token) in rows:
                probs[row, pos] = rows[int(token)]
        return np.log(probs) + 3.0  # a constant shift changes no softmax

    [entities] = predict_entities(logits_fn, ["在北京公司"], enc, LABELS, max_seq_length=16, batch_size=4)
    assert [(e["text"], e["score"]) for e in entities] == [("北京", 0.7), ("公司", 0.425)]
    for e in entities:
        assert 0.0 <= e["score"] <= 1.0


def test_output_is_written_chunk_by_chunk_before_the_input_ends(trained):
    """predict.py on a pipe: the first chunk's line comes out while stdin is still open."""
    import os
    import subprocess
    import sys
    import threading

    from conftest import REPO

    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "predict.py"), "--model_dir", trained["teacher"],
                             "--chunk_size", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a pipe is block-buffered unless Python is told otherwise: the flush must do it
                            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
    try:
        proc.stdin.write("北京公司\n")
        proc.stdin.flush()
        got = {}
        reader = threading.Thread(target=lambda: got.setdefault("line", proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(240)
        assert "line" in got, "no output line while the input stayed open"
        assert json.loads(got["line"])["text"] == "北京公司"
        assert proc.poll() is None  # still waiting for more input
        proc.stdin.write("在北京\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(120) == 0, proc.stderr.read()[-2000:]
        assert [json.loads(line)["text"] for line in rest.splitlines()] == ["在北京"]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_one_predictor_shared_by_threads_gives_the_serial_answers(trained, tmp_path):
    """4 threads calling one NerPredictor (a static export: one Paddle Inference predictor) at once. Without the lock
    this raised RuntimeError from predictor.run() or aborted the process."""
    from concurrent.futures import ThreadPoolExecutor

    from ner_ofa import backends
    from ner_ofa.predictor import NerPredictor

    static = str(tmp_path / "static" / "model")
    backends.export_static(trained["teacher"], static)
    ner = NerPredictor(str(tmp_path / "static"), batch_size=4)
    base = ["王伟在北京工作。", "李娜去了上海", "张伟在北京大学", "中国银行在上海", "刘洋和王芳在广州见面"]
    texts = [[f"{t}{'。' * k}{t}" * (1 + k % 3) for t in base] for k in range(8)]
    serial = [ner(group) for group in texts]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert list(pool.map(ner, texts)) == serial
