"""predict.py's text handling with a fake model: offsets on mixed text, long texts, output schema."""
import io
import json

import numpy as np
from conftest import fake_tokenizer

import predict
import utils
from ner_ofa import cli

LABELS = ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


FakeTokenizer = fake_tokenizer(*"公司北京在年月a1")


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
    enc = utils.CharEncoder(FakeTokenizer)
    text = "Ａpple公司 2024年在北京，ｘ１ 北京 abc公司"
    [entities] = utils.predict_entities(rule_model(enc), [text], enc, LABELS, max_seq_length=64, batch_size=4)
    assert [(e["type"], e["text"]) for e in entities] == [("ORG", "公司"), ("LOC", "北京"), ("LOC", "北京"), ("ORG", "公司")]
    for e in entities:
        assert text[e["start"]:e["end"]] == e["text"]
    assert entities[0]["start"] == text.index("公司")


def test_long_text_entities_near_window_edges_survive():
    enc = utils.CharEncoder(FakeTokenizer)
    text = ("在" * 7 + "北京" + "在" * 5 + "公司") * 40 + "在" * 3  # 643 characters, windows of 14
    [entities] = utils.predict_entities(rule_model(enc, margin=3), [text], enc, LABELS, max_seq_length=16,
                                        batch_size=8)
    assert len(entities) == 80
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def use_rule_model(monkeypatch):
    """predict.main with the rule model instead of a model directory."""
    enc = utils.CharEncoder(FakeTokenizer)
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
    assert lines[0]["entities"] == [{"type": "LOC", "text": "北京", "start": 0, "end": 2},
                                    {"type": "ORG", "text": "公司", "start": 2, "end": 4}]
    assert lines[1]["entities"] == [] and lines[2]["entities"] == []
    monkeypatch.setattr("sys.stdin", io.StringIO("北京\n"))
    predict.main(predict.parse_args(["--model_dir", "x", "--format", "plain"]))
    assert "LOC\t0\t2\t北京" in capsys.readouterr().out


def test_empty_input_file_is_an_error(monkeypatch, tmp_path):
    import pytest

    use_rule_model(monkeypatch)
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(cli.UserError, match="no text to label"):
        predict.main(predict.parse_args(["--model_dir", "x", "--input_file", str(path)]))


def test_100k_character_line_and_control_characters():
    enc = utils.CharEncoder(FakeTokenizer)
    text = ("\x00北京\t\u200b公司 " * 12500)  # 100,000 characters with control and zero-width characters
    assert len(text) == 100000
    [ids] = [enc.encode(list(text))]
    assert len(ids) == 100000
    [pred] = utils.predict_label_ids(rule_model(enc), [ids], enc, max_seq_length=128, batch_size=64)
    assert len(pred) == 100000
    [entities] = utils.predict_entities(rule_model(enc), [text], enc, LABELS, 128, 64)
    assert len(entities) == 25000 and all(text[e["start"]:e["end"]] == e["text"] for e in entities)


def test_plain_format_is_what_the_docstring_says(monkeypatch, capsys):
    use_rule_model(monkeypatch)
    predict.main(predict.parse_args(["--model_dir", "x", "--format", "plain", "--text", "在北京", "--text", "公司在"]))
    assert capsys.readouterr().out == "在北京\n  LOC\t1\t3\t北京\n公司在\n  ORG\t0\t2\t公司\n"
    doc = " ".join(predict.__doc__.split())
    assert ('--format plain is for reading, not parsing: each text on a line of its own, then one line per entity, '
            'two spaces and "TYPE<TAB>start<TAB>end<TAB>text"') in doc


def test_a_byte_order_mark_is_not_part_of_the_first_text(monkeypatch, capsys, tmp_path):
    use_rule_model(monkeypatch)
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff北京公司\r\n北京\r\n".encode("utf-8"))
    for source in (["--input_file", str(path)], []):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes()), encoding="utf-8"))
        predict.main(predict.parse_args(["--model_dir", "x", *source]))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["text"] for line in lines] == ["北京公司", "北京"], source
        assert lines[0]["entities"][0] == {"type": "LOC", "text": "北京", "start": 0, "end": 2}


def test_help_shows_the_line_separator_as_written(capsys):
    import pytest

    with pytest.raises(SystemExit):
        predict.parse_args(["--help"])
    out = capsys.readouterr().out
    assert r'split on "\n" only (a trailing "\r" is dropped)' in " ".join(out.split())
    assert "\r" not in out
