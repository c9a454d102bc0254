"""The MSRA driver's own pieces on hand-made data: the vocabulary cut (ner_ofa.model_io.write_init_dir, also the
load test's) and the coverage statistics."""
import json
import os
import sys

import pytest

from conftest import REPO

from ner_ofa.data import write_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa import model_io

sys.path.insert(0, os.path.join(REPO, "scripts"))
import benchmark_msra_cpu as driver  # noqa: E402


def _example(text, tags):
    return {"chars": list(text), "labels": tags.split()}


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_ner_file(str(data / "train.tsv"), [_example("张三在北京", "B-PER I-PER O B-LOC I-LOC"),
                                                   _example("李四去上海", "B-PER I-PER O B-LOC I-LOC")])
    write_ner_file(str(data / "dev.tsv"), [_example("张三", "B-PER I-PER")])
    write_ner_file(str(data / "test.tsv"), [_example("王五在北京", "B-PER I-PER O B-LOC I-LOC")])
    bert = tmp_path / "bert"
    bert.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "a", "张", "三", "在", "北", "京", "李",
             "四", "去", "上", "海", "王", "五", "天"]
    (bert / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    (bert / "config.json").write_text(json.dumps({"vocab_size": len(vocab), "hidden_size": 768,
                                                  "num_hidden_layers": 12, "num_attention_heads": 12,
                                                  "intermediate_size": 3072, "max_position_embeddings": 512}))
    return str(data), str(bert)


def test_vocab_cut_keeps_specials_and_train_characters_in_order(tmp_path):
    data, bert = _data(tmp_path)
    out = tmp_path / "init"
    config = model_io.write_init_dir(str(out), bert, num_layers=1, hidden_size=24, num_heads=6, intermediate_size=48,
                                     vocab_from=os.path.join(data, "train.tsv"))
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    # train.tsv only: 王/五 (test), 天 and a (unused) are cut; dev.tsv is not read either
    assert vocab == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "张", "三", "在", "北", "京", "李", "四", "去", "上", "海"]
    assert config["vocab_size"] == len(vocab) and config["num_attention_heads"] == 6
    encoder = CharEncoder(model_io.load_tokenizer(str(out)))
    assert encoder.encode(list("王北")) == [encoder.unk_id, vocab.index("北")]
    full = model_io.write_init_dir(str(tmp_path / "full"), bert, num_layers=4, hidden_size=256, num_heads=8,
                                   intermediate_size=1024)
    assert full["vocab_size"] == 20


def test_data_stats_counts_mentions_seen_in_train(tmp_path):
    data, bert = _data(tmp_path)
    stats = driver.data_stats(driver.parse_args(["--data_dir", data, "--bert_dir", bert]))
    assert stats["dev"]["mentions_seen_as_entity_in_train"] == 1.0          # 张三
    assert stats["test"]["entity_mentions"] == 2
    assert stats["test"]["mentions_seen_as_entity_in_train"] == 0.5         # 北京 yes, 王五 no
    assert stats["test"]["characters_unseen_in_train"] == 0.4               # 王, 五 of 5


def test_kept_layer_rules_of_the_comparison():
    import compare_kept_layers as compare
    from ner_ofa import supernet

    # Paddle's scripts keep the last layer, the paper's code (the project's rule) drops it
    assert compare.paddle_rule(0.5, 4) == [1, 3] and supernet.kept_layers(0.5, 4) == [0, 2]
    assert compare.paddle_rule(0.5, 12) == [1, 3, 5, 7, 9, 11]
    assert compare.paddle_rule(0.75, 4) == [0, 1, 3] and compare.paddle_rule(0.6667, 6) == [0, 2, 3, 5]
    with compare.rule_in_use("paddle"):
        assert supernet.kept_layers(0.5, 4) == [1, 3]
    assert supernet.kept_layers is compare.RULES["paper"] and supernet.kept_layers(0.5, 4) == [0, 2]


def test_a_failing_stage_is_one_line_naming_its_log(tmp_path):
    import pytest

    from ner_ofa import cli, stages

    with pytest.raises(cli.UserError, match=r"^quantize_model failed \(exit code 2\): see its log above$"):
        stages.run_stage("quantize_model.py", ["--model_dir", str(tmp_path / "none"), "--output_dir",
                                               str(tmp_path / "out")], str(tmp_path / "out" / "quantization.json"))


def test_stage2_variants_run_each_recipe_once_and_table_them(trained, tmp_path):
    """scripts/stage2_variants.py: every variant is stage 2 with the shared options and its own flags last; the JSON
    has each pair's dev and test F1 per variant; a second call reads finished variants instead of rerunning them."""
    import pytest

    import stage2_variants as study

    argv = ["--teacher_dir", trained["teacher"], "--data_dir", trained["data_dir"], "--work_dir", str(tmp_path / "w"),
            "--results", str(tmp_path / "r.json"), "--max_steps", "2", "--save_steps", "2", "--procs", "1",
            "--width_mult_list", "1.0", "0.5", "--depth_mult_list", "1.0", "0.5", "--batch_size", "8",
            "--variant", "base=", "--variant", "last=--depth_rep_target last --lambda_rep 1.0"]
    args = study.parse_args(argv)
    assert args.variants == {"base": [], "last": ["--depth_rep_target", "last", "--lambda_rep", "1.0"]}
    stage_argv = study.variant_argv(args, "last", args.variants["last"])
    assert stage_argv[-4:] == ["--depth_rep_target", "last", "--lambda_rep", "1.0"]
    results = study.main(args)
    assert sorted(results["variants"]) == ["base", "last"]
    for name in ("base", "last"):
        summary = model_io.read_json(str(tmp_path / "w" / name / "summary.json"))
        assert results["variants"][name]["pairs"]["0.5_0.5"]["test_f1"] == summary["pairs"]["0.5_0.5"]["test_f1"]
        assert sorted(results["variants"][name]["pairs"]) == ["0.5_0.5", "0.5_1.0", "1.0_0.5", "1.0_1.0"]
    stage_args = model_io.read_json(str(tmp_path / "w" / "last" / "args.json"))["args"]
    assert (stage_args["depth_rep_target"], stage_args["lambda_rep"], stage_args["max_steps"]) == ("last", 1.0, 2)
    assert model_io.read_json(str(tmp_path / "r.json")) == results
    mtime = os.path.getmtime(str(tmp_path / "w" / "base" / "summary.json"))
    assert study.main(args)["variants"]["base"]["pairs"] == results["variants"]["base"]["pairs"]
    assert os.path.getmtime(str(tmp_path / "w" / "base" / "summary.json")) == mtime
    with pytest.raises(SystemExit):
        study.parse_args(argv + ["--variant", "base=--lambda_rep 0"])  # a name used twice
    with pytest.raises(SystemExit):
        study.parse_args(argv + ["--variant", "quick=--no_tes"])  # no test F1 to compare (as stage 2 reads it)


def _stage_log(path, events):
    """A train.log of (seconds from 10:00:00, message) lines, as the stages write them."""
    import datetime

    start = datetime.datetime(2026, 12, 3, 10, 0, 0)
    with open(path, "w", encoding="utf-8") as handle:
        for seconds, message in events:
            stamp = (start + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
            handle.write(f"{stamp} INFO {message}\n")
    return str(path)


def _step(n, rate):
    return f"step {n}/40 epoch 0.10 | loss 0.5000 | lr 1.00e-04 | {rate:.3f} s/step, 16.0 samples/s | elapsed 0:00:10"


def test_stage_wall_from_log_splits_a_stage_and_projects_a_recipe(tmp_path):
    import stage_wall_from_log as wall

    # 3 s start-up, 1 s steps logged every 10, a 5 s evaluation at steps 20 and 40, 7 s of test scoring
    aligned = _stage_log(tmp_path / "a.log", [(0, "teacher: m"), (13, _step(10, 1)), (23, _step(20, 1)),
                                              (28, "dev step 20 epoch 0.1 | F1 0.5"), (38, _step(30, 1)),
                                              (48, _step(40, 1)), (53, "dev step 40 epoch 0.2 | F1 0.6"),
                                              (60, "test (best dev step 40) | F1 0.6")])
    expected = {"wall_seconds": 60.0, "startup_seconds": 3.0, "steps": 40, "seconds_per_step": 1.0,
                "evaluations": 2, "seconds_per_evaluation": 5.0, "after_training_seconds": 7.0}
    assert wall.stage_parts(wall.read_log(aligned)) == expected
    # an evaluation between two step lines (step 15, 2 s steps): the time the steps leave over, its save included;
    # one before the first step line is counted at the others' mean
    unaligned = _stage_log(tmp_path / "u.log", [(0, "teacher: m"), (20, "dev step 1 epoch 0.0 | F1 0.1"),
                                                (38, _step(10, 2)), (63, "dev step 15 epoch 0.1 | F1 0.5"),
                                                (73, _step(20, 2)), (74, "test | F1 0.5")])
    assert wall.stage_parts(wall.read_log(unaligned)) == {
        "wall_seconds": 74.0, "startup_seconds": 3.0, "steps": 20, "seconds_per_step": 2.0, "evaluations": 2,
        "seconds_per_evaluation": 15.0, "after_training_seconds": 1.0}

    result = wall.main(wall.parse_args(["--teacher_log", aligned, "--ofa_log", aligned, "--teacher_steps", "40",
                                        "--teacher_evaluations", "2", "--ofa_steps", "20", "--ofa_evaluations", "1",
                                        "--budget_seconds", "150"]))
    # 2 x (3 + 7) fixed, 3 evaluations x 5 s, 40 + 20 steps x 1 s
    assert result["recipe"]["projected_wall_seconds"] == 20 + 15 + 60
    # 150 - 35 fixed leaves 115 s for steps in the recipe's 2:1 ratio
    assert result["budget"]["steps"] == {"teacher": int(40 * 115 / 60), "ofa": int(20 * 115 / 60)}


def test_a_negative_eval_sentences_is_refused_by_the_parser(capsys):
    assert driver.parse_args(["--eval_sentences", "0"]).eval_sentences == 0
    with pytest.raises(SystemExit):
        driver.parse_args(["--eval_sentences", "-1"])
    assert "--eval_sentences: must be 0 or positive, got -1" in capsys.readouterr().err


@pytest.mark.parametrize("recipe, name", [("scratch", "msra_cpu"), ("pretrained", "msra_pretrained_cpu")])
def test_quick_never_replaces_the_recipes_results(recipe, name, tmp_path):
    args = driver.parse_args(["--teacher", recipe, "--quick"])
    assert args.results == os.path.join(REPO, "results", f"{name}_quick.json")
    assert args.work_dir == os.path.join(REPO, "tmp", f"{name}_quick")
    assert driver.parse_args(["--teacher", recipe]).results == os.path.join(REPO, "results", f"{name}.json")
    mine = str(tmp_path / "mine.json")  # an explicit path wins
    assert driver.parse_args(["--teacher", recipe, "--quick", "--results", mine]).results == mine
