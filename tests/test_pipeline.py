"""The demo chain end to end through the scripts' main(): teacher -> OFA (2 widths) -> export -> predict."""
import argparse
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, export_args, ofa_args, teacher_args

import demo_data
import export_model_msra_ner_ofa as export_stage
from ner_ofa.tools import predict
import run_msra_ner
import run_msra_ner_ofa
from ner_ofa.data import dev_sample, read_ner_file, split_dev, write_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa.labelling import spans_from_labels
from ner_ofa.scoring import evaluate
from ner_ofa import backends, cli, model_io


@pytest.fixture(scope="module")
def chain(tiny_demo, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("chain"))
    data_dir, model_dir = tiny_demo["data_dir"], tiny_demo["model_dir"]
    teacher = run_msra_ner.main(teacher_args(data_dir, model_dir, os.path.join(root, "teacher")))
    ofa = run_msra_ner_ofa.main(ofa_args(data_dir, os.path.join(root, "teacher", "model_best"), os.path.join(root, "ofa")))
    exported = export_stage.main(export_args(os.path.join(root, "ofa", "model_0.5"), os.path.join(root, "export")))
    return {"root": root, "teacher": teacher, "ofa": ofa, "export": exported, "data_dir": data_dir}


def test_teacher_learns_and_writes_best_model(chain):
    teacher, best = chain["teacher"], os.path.join(chain["root"], "teacher", "model_best")
    assert teacher["best_dev_f1"] > 0.3, teacher["curve"]
    for name in ("config.json", model_io.WEIGHTS_NAME, "vocab.txt", "model_info.json", "metrics.json", "args.json"):
        assert os.path.isfile(os.path.join(best, name)), name
    metrics = model_io.read_json(os.path.join(best, "metrics.json"))
    assert metrics["step"] == teacher["best_step"] and metrics["dev"]["f1"] == teacher["best_dev_f1"]
    assert set(metrics["test"]) >= {"precision", "recall", "f1"}
    # every character of every test sentence is scored
    test = read_ner_file(os.path.join(chain["data_dir"], "test.tsv"))
    assert metrics["test"]["characters"] == sum(len(e["chars"]) for e in test)
    assert max(len(e["chars"]) for e in test) > 46  # longer than one window
    info = model_io.read_json(os.path.join(best, "model_info.json"))
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-TIME", "I-TIME"]
    assert not [n for n in os.listdir(os.path.join(chain["root"], "teacher")) if ".tmp" in n or ".old" in n]


def test_ofa_keeps_best_per_width(chain):
    summary = chain["ofa"]
    assert set(summary["pairs"]) == {"1.0", "0.5"}
    for width, row in summary["pairs"].items():
        assert row["dev_f1"] > 0.3, summary
        metrics = model_io.read_json(os.path.join(row["model_dir"], "metrics.json"))
        assert metrics["dev"]["f1"] == row["dev_f1"] and metrics["test"]["f1"] == row["test_f1"]
        assert metrics["step"] == row["best_step"]
    on_disk = model_io.read_json(os.path.join(chain["root"], "ofa", "summary.json"))
    assert on_disk["pairs"] == summary["pairs"]


def test_export_sub_model_reloads_and_matches_supernet_score(chain):
    sub_dir = chain["export"]["sub_model_output_dir"]
    assert chain["export"]["parity_max_abs_diff"] <= 1e-4
    sub, tokenizer, info = model_io.load_model_dir(sub_dir, ["sub_model"])
    assert info["width_mult"] == 0.5 and info["num_heads"] == 2
    sub.eval()
    test = read_ner_file(os.path.join(chain["data_dir"], "test.tsv"))
    scores = evaluate(backends.dynamic_logits_fn(sub), test, CharEncoder(tokenizer), info["labels"], 48, 16)
    assert scores["f1"] == chain["ofa"]["pairs"]["0.5"]["test_f1"]  # the supernet at 0.5 scored the same


def test_export_never_touches_its_input(chain, tmp_path):
    source = os.path.join(chain["root"], "ofa", "model_0.5")
    before = {n: os.path.getmtime(os.path.join(source, n)) for n in os.listdir(source)}
    export_stage.main(export_args(source, str(tmp_path / "again"), static=False))
    assert {n: os.path.getmtime(os.path.join(source, n)) for n in os.listdir(source)} == before
    assert not os.path.exists(tmp_path / "again" / "static")


def test_predict_static_equals_dynamic(chain, capsys):
    text = "三月五日，王伟在北京的人民银行会见了李娜。" * 6  # longer than one window
    static_dir = os.path.join(chain["root"], "export", "static")
    got_static = predict.main(predict.parse_args(["--model_dir", static_dir, "--text", text, "--text", ""]))
    got_dynamic = predict.main(predict.parse_args(["--model_dir", chain["export"]["sub_model_output_dir"],
                                                   "--text", text, "--text", ""]))
    assert got_static == got_dynamic and got_static[1] == []
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["text"] == text
    for entity in lines[0]["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"]


def test_python_api_labels_like_predict(chain, capsys):
    """ner_ofa.NerPredictor, what a notebook imports: the same entities predict.py prints, for a list or one text."""
    from ner_ofa import NerPredictor

    text = "三月五日，王伟在北京的人民银行会见了李娜。" * 6
    static_dir = os.path.join(chain["root"], "export", "static")
    predict.main(predict.parse_args(["--model_dir", static_dir, "--text", text, "--text", "李娜去了上海。"]))
    printed = [json.loads(line)["entities"] for line in capsys.readouterr().out.splitlines()]
    ner = NerPredictor(static_dir)
    assert ner([text, "李娜去了上海。"]) == printed and ner(text) == printed[0] and printed[0]
    assert NerPredictor(chain["export"]["sub_model_output_dir"])([text]) == printed[:1]  # a dygraph directory
    with pytest.raises(cli.UserError, match="exceeds the model's"):
        NerPredictor(static_dir, max_seq_length=100000)


def test_other_label_set_with_labels_file_and_dev_from_train(tmp_path):
    """A user's own data: 8 entity types (17 BIO labels) from labels.txt, no dev.tsv (dev carved from train)."""
    types = [f"T{i}" for i in range(8)]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split, n, seed in (("train", 120, 0), ("test", 20, 1)):
        examples = demo_data.make_examples(n, seed)
        for ex in examples:  # re-type the entities: deterministic on their first character
            kind = None
            for i, label in enumerate(ex["labels"]):
                if label.startswith("B-"):
                    kind = types[ord(ex["chars"][i]) % 8]
                ex["labels"][i] = "O" if label == "O" else f"{label[0]}-{kind}"
        write_ner_file(str(data_dir / f"{split}.tsv"), examples)
    labels = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    (data_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    _, model_dir = demo_data.write_demo(str(tmp_path / "model"), 1, 1, 1, hidden_size=32, intermediate_size=64)
    out = tmp_path / "out"
    teacher = run_msra_ner.main(teacher_args(str(data_dir), model_dir, str(out / "teacher"), "--max_steps", "8"))
    assert model_io.read_json(str(out / "teacher" / "model_best" / "model_info.json"))["labels"] == labels
    # dev was carved from train (seeded) and scored over all 8 types: its gold chunks are that split's entities
    train = read_ner_file(str(data_dir / "train.tsv"))
    _, dev = split_dev(train, 0.1, 42)
    dev_entities = sum(len(spans_from_labels(ex["labels"])) for ex in dev)
    assert dev_entities > 0 and [p["dev"]["gold_chunks"] for p in teacher["curve"]] == [dev_entities]
    assert {t for ex in dev for t, _, _ in spans_from_labels(ex["labels"])} <= set(types)
    run_msra_ner_ofa.main(ofa_args(str(data_dir), str(out / "teacher" / "model_best"), str(out / "ofa"),
                                   "--max_steps", "4"))
    result = export_stage.main(export_args(str(out / "ofa" / "model_1.0"), str(out / "export"), width="1.0"))
    logits = backends.static_logits_fn(result["static_sub_model"])(np.array([[2, 7, 8, 3]], dtype="int64"))
    assert logits.shape == (1, 4, 17)


HELP_SCRIPTS = ("run_msra_ner.py", "run_msra_ner_ofa.py", "export_model_msra_ner_ofa.py", "compress.py", "predict.py",
                "quantize_model.py", "benchmark.py", "serve.py", "demo_data.py") + tuple(
    os.path.join("scripts", name) for name in (
        "benchmark_msra_cpu.py", "compare_kept_layers.py", "deploy_path_before_after.py", "dev_sample_check.py",
        "eval_split_speed.py", "get_pretrained_zh.py", "load_test_serve.py", "stage2_variants.py",
        "stage_wall_from_log.py", "train_step_speed.py"))


def script_parser(script, monkeypatch):
    """The argparse parser a script's parse_args builds (caught at its parse_args call)."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("script_under_test", os.path.join(REPO, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Caught(Exception):
        pass

    def catch(self, *args, **kwargs):
        raise Caught(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(Caught) as caught:
        module.parse_args([])
    monkeypatch.undo()
    return caught.value.args[0]


@pytest.mark.parametrize("script", HELP_SCRIPTS)
def test_every_flag_has_help(script, monkeypatch):
    parser = script_parser(script, monkeypatch)
    # an internal flag (a worker process's, help=SUPPRESS) is hidden on purpose
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS]
    assert flags
    undocumented = [a.option_strings[0] for a in flags if not (a.help or "").strip()]
    assert not undocumented, f"{script}: flags without help: {undocumented}"
    formatter = parser._get_formatter()
    with_default = [a for a in flags if a.default is not None and not a.required and a.nargs != 0]
    no_default_shown = [a.option_strings[0] for a in with_default if "default" not in formatter._get_help_string(a)]
    assert not no_default_shown, f"{script}: --help shows no default for {no_default_shown}"
    out = subprocess.run([sys.executable, os.path.join(REPO, script), "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    missing = [a.option_strings[0] for a in flags if a.option_strings[0] not in out.stdout]
    assert not missing, f"{script} --help lacks {missing}"


def test_int8_model_loads_and_labels_like_fp32(chain, tmp_path, capsys):
    from ner_ofa.tools import quantize as quantize_model

    static_dir = os.path.join(chain["root"], "export", "static")
    result = quantize_model.main(quantize_model.parse_args(
        ["--model_dir", static_dir, "--output_dir", str(tmp_path / "int8"),
         "--data_file", os.path.join(chain["data_dir"], "test.tsv")]))
    # A test set this small moves ~0.3-0.5 points per entity, so 1 point allows two entities to flip; a broken
    # quantization moves many more.
    assert os.path.isfile(result["onnx_int8"]) and abs(result["f1_change_points"]) <= 1.0, result["f1"]
    import onnx

    ops = [node.op_type for node in onnx.load(result["onnx_int8"]).graph.node]
    assert ops.count("MatMulInteger") == 2 * 6 + 1  # q, k, v, out, FFN x2 per layer + classifier are INT8
    text = "三月五日，王伟在北京的人民银行会见了李娜。"
    int8 = predict.main(predict.parse_args(["--model_dir", str(tmp_path / "int8"), "--backend", "onnxruntime",
                                            "--text", text]))
    fp32 = predict.main(predict.parse_args(["--model_dir", str(tmp_path / "int8"), "--backend", "onnxruntime",
                                            "--precision", "fp32", "--text", text]))
    static = predict.main(predict.parse_args(["--model_dir", static_dir, "--text", text]))
    assert fp32 == static  # the ONNX conversion itself changes nothing
    # ... over a whole test set too, though ONNX Runtime runs its batches unpadded and Paddle Inference pads them
    # to shape buckets: the same entities
    from ner_ofa import NerPredictor
    from ner_ofa.data import read_ner_file

    texts = ["".join(ex["chars"]) for ex in read_ner_file(os.path.join(chain["data_dir"], "test.tsv"))]
    onnx_fp32 = NerPredictor(str(tmp_path / "int8"), backend="onnxruntime", precision="fp32", batch_size=8)
    paddle_static = NerPredictor(static_dir, batch_size=8)
    assert (onnx_fp32.shapes, paddle_static.shapes) == ("exact", "buckets")
    spans = [[(e["type"], e["start"], e["end"]) for e in entities] for entities in onnx_fp32(texts)]
    assert spans == [[(e["type"], e["start"], e["end"]) for e in entities] for entities in paddle_static(texts)]
    assert len(texts) > 8 and sum(map(len, spans)) > 0
    assert int8[0] and all(text[e["start"]:e["end"]] == e["text"] for e in int8[0])
    with pytest.raises(cli.UserError, match="needs a quantize_model.py output directory"):
        predict.main(predict.parse_args(["--model_dir", static_dir, "--backend", "onnxruntime", "--text", text]))


def test_deploy_path_before_after_compares_one_session(chain, tmp_path):
    """scripts/deploy_path_before_after.py against HEAD itself: the same code on both sides gives the same
    entities and runs the same tokens; the JSON has the fields docs/results.md quotes."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import deploy_path_before_after as compare

    bench = tmp_path / "bench.txt"
    bench.write_text("三月五日，王伟在北京的人民银行会见了李娜。\n" * 3 + "上海" * 100 + "\n", encoding="utf-8")
    out = tmp_path / "deploy.json"
    result = compare.main(compare.parse_args([
        "--model_dir", os.path.join(chain["root"], "export", "static"), "--before", "HEAD", "--bench_file", str(bench),
        "--data_file", os.path.join(chain["data_dir"], "test.tsv"), "--repeats", "1", "--output", str(out)]))
    assert json.load(open(out, encoding="utf-8")) == json.loads(json.dumps(result))
    assert result["same_entities_on_workload"] == {"texts": 4, "of": 4}
    for key in ("tokens_run", "real_tokens", "model_calls"):
        assert result["before"][key] == result["after"][key]
    from ner_ofa.features import make_windows

    size = model_io.read_model_info(os.path.join(chain["root"], "export", "static"))["max_seq_length"] - 2
    windows = make_windows(200, size)
    assert result["before"]["real_tokens"] == 3 * (21 + 2) + sum(e - s + 2 for s, e in windows) and len(windows) > 1
    assert result["scores"]["before"] == result["scores"]["after"]


def test_eval_sentences_scores_a_dev_sample_in_both_stages_and_no_test_skips_test(tiny_demo, tmp_path):
    """--eval_sentences 25 of the demo's 60 dev sentences: every evaluation of stage 1 and stage 2 scores exactly
    that sample (its gold entities); stage 2's --no_test leaves test to whoever exports the pairs. --resume with
    another sample is refused (the checkpoint's best F1 was scored on this one)."""
    data_dir = tiny_demo["data_dir"]
    dev = read_ner_file(os.path.join(data_dir, "dev.tsv"))
    sample = dev_sample(dev, 25, 42)
    sample_entities = sum(len(spans_from_labels(ex["labels"])) for ex in sample)
    assert 0 < sample_entities < sum(len(spans_from_labels(ex["labels"])) for ex in dev)
    teacher = run_msra_ner.main(teacher_args(data_dir, tiny_demo["model_dir"], str(tmp_path / "t"), "--max_steps", "8",
                                             "--save_steps", "4", "--eval_sentences", "25"))
    assert [(p["dev"]["sentences"], p["dev"]["gold_chunks"]) for p in teacher["curve"]] == [(25, sample_entities)] * 2
    args_json = (tmp_path / "t" / "args.json").read_text(encoding="utf-8")
    with pytest.raises(cli.UserError, match="scored 25 dev sentences .*, this run would score 60"):
        run_msra_ner.main(teacher_args(data_dir, tiny_demo["model_dir"], str(tmp_path / "t"), "--max_steps", "8",
                                       "--save_steps", "4", "--resume"))
    assert (tmp_path / "t" / "args.json").read_text(encoding="utf-8") == args_json  # the refusal wrote nothing
    resumed = run_msra_ner.main(teacher_args(data_dir, tiny_demo["model_dir"], str(tmp_path / "t"), "--max_steps",
                                             "8", "--save_steps", "4", "--resume", "--eval_sentences", "25"))
    assert resumed["best_step"] == teacher["best_step"] and resumed["curve"] == teacher["curve"]
    lines = []  # the stage's own log lines (its logging setup stops them reaching pytest's capture)
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    cli.logger.addHandler(handler)
    try:
        summary = run_msra_ner_ofa.main(ofa_args(data_dir, str(tmp_path / "t" / "model_best"), str(tmp_path / "o"),
                                                 "--max_steps", "4", "--save_steps", "4", "--eval_sentences", "25",
                                                 "--no_test"))
    finally:
        cli.logger.removeHandler(handler)
    for name, row in summary["pairs"].items():
        metrics = model_io.read_json(os.path.join(row["model_dir"], "metrics.json"))
        assert "test_f1" not in row and row["dev_f1"] == metrics["dev"]["f1"], (row, metrics)
        assert "test" not in metrics and (metrics["dev"]["sentences"], metrics["dev"]["gold_chunks"]) == \
            (25, sample_entities), metrics
        width, depth = row["width"], row["depth"]
        assert f"width {width} depth {depth}: best dev F1 {row['dev_f1']:.4f} (step 4) | {row['model_dir']}" in lines
