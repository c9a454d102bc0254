"""The chain on a slice of the real MSRA NER data in ../shared (skipped when it is absent)."""
import json
import os

import pytest
from conftest import SHARED, export_args

import export_model_msra_ner_ofa as export_stage
import run_msra_ner
import run_msra_ner_ofa
from ner_ofa.data import read_ner_file, write_ner_file
from ner_ofa import model_io

MSRA = os.path.join(SHARED, "data", "msra_ner")
BERT = os.path.join(SHARED, "data", "bert-base-chinese")

pytestmark = pytest.mark.skipif(
    not (os.path.isfile(os.path.join(MSRA, "train.tsv")) and os.path.isfile(os.path.join(BERT, "vocab.txt"))),
    reason=f"real MSRA data / bert-base-chinese vocab not found under {SHARED}/data (they are never committed)")


def test_msra_slice_teacher_ofa_export(tmp_path):
    """A small random-init BERT on a slice of MSRA, through the three stages. Quality floor: the teacher must learn
    what it is given -- the test slice (with its longest sentence, over 1,000 characters, scored in overlapping
    windows) is in its training data on purpose: from random init, generalising to unseen MSRA sentences takes
    thousands of steps, remembering 80 sentences a few hundred (seen: test F1 0.65 after 400 steps). A pipeline
    that misaligns labels, windows or offsets anywhere between the files and the scores stays far below."""
    train = read_ner_file(os.path.join(MSRA, "train.tsv"))[:300]
    test = read_ner_file(os.path.join(MSRA, "test.tsv"))
    longest = max(test, key=lambda e: len(e["chars"]))
    test = test[:80] + [longest]
    data = tmp_path / "data"
    data.mkdir()
    write_ner_file(str(data / "train.tsv"), train + test)
    write_ner_file(str(data / "test.tsv"), test)
    model = tmp_path / "bert_small"
    model.mkdir()
    (model / "vocab.txt").write_bytes(open(os.path.join(BERT, "vocab.txt"), "rb").read())
    config = json.load(open(os.path.join(BERT, "config.json")))
    config.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    (model / "config.json").write_text(json.dumps(config))

    common = ["--data_dir", str(data), "--device", "cpu", "--max_seq_length", "64", "--batch_size", "16",
              "--logging_steps", "100", "--learning_rate", "1e-3"]
    teacher = run_msra_ner.main(run_msra_ner.parse_args(
        ["--model_name_or_path", str(model), "--output_dir", str(tmp_path / "t"), "--max_steps", "400",
         "--save_steps", "100", *common]))
    metrics = model_io.read_json(str(tmp_path / "t" / "model_best" / "metrics.json"))
    assert metrics["test"]["characters"] == sum(len(e["chars"]) for e in test) and len(longest["chars"]) > 1000
    assert model_io.read_json(str(tmp_path / "t" / "model_best" / "model_info.json"))["labels"] == \
        ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert teacher["curve"][0]["dev"]["sentences"] == 38  # 0.1 of train held out
    assert teacher["test"]["f1"] >= 0.45, teacher["test"]
    summary = run_msra_ner_ofa.main(run_msra_ner_ofa.parse_args(
        ["--model_name_or_path", str(tmp_path / "t" / "model_best"), "--output_dir", str(tmp_path / "o"),
         "--max_steps", "4", "--save_steps", "4", "--width_mult_list", "1.0", "0.5", *common]))
    assert set(summary["pairs"]) == {"1.0", "0.5"}
    # 4 distillation steps keep most of it (seen: 0.61 at width 1.0, 0.49 at 0.5)
    assert summary["pairs"]["1.0"]["test_f1"] >= 0.4 and summary["pairs"]["0.5"]["test_f1"] >= 0.3, summary
    result = export_stage.main(export_args(str(tmp_path / "o" / "model_0.5"), str(tmp_path / "e")))
    assert result["parity_max_abs_diff"] <= 1e-4
