"""Depth and width (DynaBERT): stage 2 over (width, depth) pairs, export and predict at a depth."""
import os

import numpy as np
import pytest
from conftest import ofa_args

import export_model_msra_ner_ofa as export_stage
from ner_ofa.tools import predict
import run_msra_ner_ofa
from ner_ofa.data import read_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa.scoring import evaluate
from ner_ofa import backends, cli, model_io, supernet


def test_width_and_depth_pairs_train_export_and_predict(trained, tmp_path):
    out = tmp_path / "o"
    summary = run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(out), "--max_steps", "4",
                                             "--save_steps", "2", "--depth_mult_list", "1.0", "0.5"))
    assert sorted(summary["pairs"]) == ["0.5_0.5", "0.5_1.0", "1.0_0.5", "1.0_1.0"]
    assert {(r["width"], r["depth"]) for r in summary["pairs"].values()} == {(1.0, 1.0), (0.5, 1.0), (1.0, 0.5),
                                                                              (0.5, 0.5)}
    source = out / "model_0.5_0.5"
    info = model_io.read_json(str(source / "model_info.json"))
    assert (info["width_mult"], info["depth_mult"], info["depth_mult_list"]) == (0.5, 0.5, [1.0, 0.5])
    assert info["kept_layers"] == {"1.0": [0, 1], "0.5": [0]}

    exported = export_stage.main(export_stage.parse_args([
        "--model_name_or_path", str(source), "--width_mult", "0.5", "--depth_mult", "0.5", "--max_seq_length", "48",
        "--sub_model_output_dir", str(tmp_path / "e" / "sub"), "--static_sub_model", str(tmp_path / "e" / "s" / "m"),
        "--device", "cpu"]))
    assert exported["parity_max_abs_diff"] <= 1e-4 and exported["dygraph_max_abs_diff"] <= 1e-4
    sub_info = model_io.read_json(str(tmp_path / "e" / "sub" / "model_info.json"))
    assert sub_info["num_layers"] == 1 and sub_info["kept_layers"] == [0] and sub_info["num_heads"] == 2
    assert model_io.read_json(str(tmp_path / "e" / "sub" / "config.json"))["num_hidden_layers"] == 1

    # the exported sub-model scores on test what stage 2 reported for that pair
    sub, tokenizer, _ = model_io.load_model_dir(str(tmp_path / "e" / "sub"), ["sub_model"])
    sub.eval()
    test = read_ner_file(os.path.join(trained["data_dir"], "test.tsv"))
    scores = evaluate(backends.dynamic_logits_fn(sub), test, CharEncoder(tokenizer), info["labels"], 48, 16)
    assert scores["f1"] == summary["pairs"]["0.5_0.5"]["test_f1"]
    # the supernet dir run at its (width, depth), its exported dygraph and static models: the same labels
    text = "三月五日，王伟在北京的人民银行会见了李娜。" * 3
    outputs = [predict.main(predict.parse_args(["--model_dir", d, "--text", text]))
               for d in (str(source), str(tmp_path / "e" / "sub"), str(tmp_path / "e" / "s"))]
    assert outputs[0] == outputs[1] == outputs[2]
    ids = np.array([[2, 7, 8, 9, 10, 3]], dtype="int64")
    static_fn, _, _ = backends.load_static_export(str(tmp_path / "e" / "s"))
    full, _, _ = model_io.load_model_dir(str(source), ["supernet"])
    full.eval()
    assert np.abs(static_fn(ids) - backends.dynamic_logits_fn(full)(ids)).max() > 1e-3  # not the full model


def test_pairs_per_step_draws_largest_smallest_and_others():
    """The pairs a step trains are drawn from (seed, step) alone: the same on every data-parallel rank and after
    --resume. Checked through the trainer's own step loop, which seeds Paddle per (step, rank) for dropout, with
    every random generator a step may touch (Paddle's, NumPy's, Python's) used between the draws as a step would."""
    import random

    import paddle
    from test_checks import fake_trainer

    pairs = run_msra_ner_ofa.Pairs([1.0, 0.75, 0.5], [1.0, 0.5], per_step=3)
    assert len(pairs.all) == 6 and pairs.all[0] == (1.0, 1.0) and pairs.all[-1] == (0.5, 0.5)

    def draws(rank, first_step):
        trainer = fake_trainer([[i] for i in range(20)], num_steps=20, rank=rank)
        out = {}
        for step, _, _ in trainer._batches(first_step):
            trainer.step = step  # what Trainer.run sets, and Distillation draws with
            out[step] = pairs.this_step(trainer.args.seed, trainer.step)
            paddle.rand([rank + 3]), np.random.rand(rank + 2), random.random()  # dropout and friends
        return out

    rank0 = draws(0, 0)
    assert draws(1, 0) == rank0  # another rank
    resumed = draws(0, 7)
    assert resumed == {step: rank0[step] for step in range(7, 20)}  # --resume at step 7
    assert all(len(d) == 3 and d[0] == (1.0, 1.0) and d[-1] == (0.5, 0.5) for d in rank0.values())
    assert len({d[1] for d in rank0.values()}) == 4  # every other pair gets drawn
    assert run_msra_ner_ofa.Pairs([1.0, 0.5], [1.0], per_step=0).this_step(42, 0) == [(1.0, 1.0), (0.5, 1.0)]
    assert supernet.kept_layers(0.5, 2) == [0]


def test_depth_list_must_hold_full_depth(trained, tmp_path):
    import pytest

    from ner_ofa import cli

    with pytest.raises(cli.UserError, match=r"--depth_mult_list must contain 1.0 \(the full depth\)"):
        run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(tmp_path / "o"),
                                       "--depth_mult_list", "0.5"))
    assert not os.path.exists(tmp_path / "o")


def test_benchmark_rows_for_width_times_depth(tiny_demo, tmp_path):
    import benchmark

    bench = tmp_path / "bench.txt"
    bench.write_text("三月五日，王伟在北京的人民银行会见了李娜。\n李娜去了上海。\n", encoding="utf-8")
    result = benchmark.main(benchmark.parse_args([
        "--bert_dir", tiny_demo["model_dir"], "--bench_file", str(bench), "--work_dir", str(tmp_path / "w"),
        "--widths", "1.0", "0.5", "--depths", "1.0", "0.5", "--repeats", "1", "--max_seq_length", "48",
        "--lac_data_file", str(tmp_path / "none.tsv"), "--output", str(tmp_path / "r.json")]))
    rows = {(r["name"]): r for r in result["rows"]}
    assert (rows["width 0.5 depth 0.5, Paddle Inference"]["width"], rows["width 0.5 depth 0.5, Paddle Inference"]["depth"]) \
        == (0.5, 0.5)
    assert rows["width 0.5 depth 0.5, ONNX Runtime INT8"]["precision"] == "int8"
    assert all("depth" in r and r["seconds"] > 0 for r in result["rows"])
    static_dir = tmp_path / "w" / "width_0.5_depth_0.5" / "static"
    assert model_io.read_json(str(static_dir / "model_info.json"))["num_layers"] == 1


def test_a_supernet_trained_on_other_layers_is_refused(trained, tmp_path):
    """A depth supernet records the layers each depth kept in training; one this code would cut differently
    (another rule, or none recorded: made before the rule changed) is refused by export and predict."""
    import shutil

    import pytest

    out = tmp_path / "o"
    run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(out), "--max_steps", "2",
                                   "--save_steps", "2", "--depth_mult_list", "1.0", "0.5"))
    info_path = out / "model_0.5_0.5" / "model_info.json"
    info = model_io.read_json(str(info_path))
    export = ["--model_name_or_path", str(out / "model_0.5_0.5"), "--width_mult", "0.5", "--depth_mult", "0.5",
              "--sub_model_output_dir", str(tmp_path / "e" / "sub"), "--static_sub_model", str(tmp_path / "e" / "s" / "m"),
              "--device", "cpu"]
    for recorded, message in ((dict(info, kept_layers={"1.0": [0, 1], "0.5": [1]}), r"trained depth 0.5 on layers \[1\]"),
                              ({k: v for k, v in info.items() if k != "kept_layers"}, "does not record")):
        model_io.write_json(str(info_path), recorded)
        with pytest.raises(cli.UserError, match=message):
            export_stage.main(export_stage.parse_args(export))
        with pytest.raises(cli.UserError, match=message):
            predict.main(predict.parse_args(["--model_dir", str(out / "model_0.5_0.5"), "--text", "王伟在北京"]))
        assert not (tmp_path / "e").exists()
    # a width-only supernet from before the record has nothing to get wrong
    model_io.write_json(str(info_path), {k: v for k, v in info.items() if k != "kept_layers"} | {"depth_mult_list": [1.0], "depth_mult": 1.0})
    supernet.check_recorded_kept_layers(model_io.read_json(str(info_path)), 2, "x")
    shutil.rmtree(out)


def test_dynabert_second_phase_starts_from_the_width_adaptive_supernet(trained, tmp_path):
    """A width-only supernet as --model_name_or_path: the run starts from its weights as they are (no second
    reordering: with learning rate 0 every kept model holds exactly those weights) and keeps the teacher's data
    record, so a later stage still checks the data against the teacher's."""
    import paddle

    out = tmp_path / "phase2"
    summary = run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["model_1.0"], str(out), "--max_steps", "2",
                                             "--save_steps", "2", "--learning_rate", "0",
                                             "--depth_mult_list", "1.0", "0.5"))
    assert sorted(summary["pairs"]) == ["0.5_0.5", "0.5_1.0", "1.0_0.5", "1.0_1.0"]
    start = paddle.load(os.path.join(trained["model_1.0"], model_io.WEIGHTS_NAME))
    kept = paddle.load(str(out / "model_0.5_0.5" / model_io.WEIGHTS_NAME))
    assert sorted(start) == sorted(kept)
    assert all(np.array_equal(start[k].numpy(), kept[k].numpy()) for k in start)
    teacher_info = model_io.read_json(os.path.join(trained["teacher"], "model_info.json"))
    info = model_io.read_json(str(out / "model_0.5_0.5" / "model_info.json"))
    assert (info["data"], info["dev_split"]) == (teacher_info["data"], teacher_info["dev_split"])


def test_dynabert_teacher_answers_each_width_at_that_width(trained):
    """Phase 2's teacher is the width-adaptive supernet at the student's width (full depth), run once per width."""
    import paddle

    model, _, info = model_io.load_model_dir(trained["model_1.0"], ["supernet"])
    teacher = run_msra_ner_ofa.Teacher(supernet.build_supernet(model, info["width_mult_list"]), info["width_mult_list"])
    teacher.model.eval()
    reference, _, _ = model_io.load_model_dir(trained["model_1.0"], ["supernet"])
    reference = supernet.build_supernet(reference, info["width_mult_list"])
    reference.eval()
    ids = paddle.to_tensor(np.array([[2, 7, 8, 9, 10, 3], [2, 11, 12, 13, 14, 3]], dtype="int64"))
    outs = teacher.outputs(ids, [1.0, 0.5, 0.5])
    assert sorted(outs) == [0.5, 1.0]
    for width in (1.0, 0.5):
        expected = run_msra_ner_ofa.logits_at(reference, width, 1.0)(ids.numpy())
        assert np.abs(outs[width].logits.numpy() - expected).max() < 1e-5
        assert len(outs[width].hidden_states) == 1 + model.bert.config.num_hidden_layers
    assert np.abs(outs[1.0].logits.numpy() - outs[0.5].logits.numpy()).max() > 1e-3


def test_dynabert_second_phase_refuses_what_it_cannot_use(trained, tmp_path):
    depth_run = tmp_path / "wd"
    run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(depth_run), "--max_steps", "2",
                                   "--save_steps", "2", "--depth_mult_list", "1.0", "0.5"))
    for source, extra, message in (
            (str(depth_run / "model_1.0_1.0"), ["--depth_mult_list", "1.0", "0.5"], "width x depth supernet"),
            (trained["model_1.0"], ["--width_mult_list", "1.0", "0.75"], "0.75 not trained in")):
        out = tmp_path / "refused"
        with pytest.raises(cli.UserError, match=message):
            run_msra_ner_ofa.main(ofa_args(trained["data_dir"], source, str(out), "--max_steps", "2", *extra))
        assert not out.exists()


@pytest.mark.parametrize("target", ["kept", "last"])
def test_depth_rep_target_picks_the_teacher_layer_a_shallow_student_matches(target):
    """A 2-of-4-layer student (layers 0, 2) is distilled towards teacher layers 0 and 2 ('kept') or 0 and 3
    ('last'): the student's states equal exactly those teacher states, so that choice's hidden-state loss is 0."""
    import argparse

    import paddle

    rng = np.random.RandomState(0)
    teacher_states = [paddle.to_tensor(rng.randn(1, 3, 4).astype("float32")) for _ in range(5)]  # embeddings + 4
    logits = paddle.to_tensor(rng.randn(1, 3, 2).astype("float32"))
    matched = [0, 1, 3] if target == "kept" else [0, 1, 4]
    student = argparse.Namespace(logits=logits, hidden_states=[teacher_states[k] for k in matched])
    teacher = argparse.Namespace(logits=logits, hidden_states=teacher_states)
    mask = paddle.to_tensor(np.array([[True, True, False]]))
    for args_target, expect_zero in ((target, True), ({"kept": "last", "last": "kept"}[target], False)):
        args = argparse.Namespace(lambda_logit=1.0, lambda_rep=1.0, depth_rep_target=args_target)
        _, _, rep = run_msra_ner_ofa.distill_loss(student, teacher, mask, args, kept=[0, 2])
        assert (rep == 0.0) == expect_zero, (args_target, rep)
    # at full depth the two choices are the same
    full = argparse.Namespace(logits=logits, hidden_states=teacher_states)
    for args_target in ("kept", "last"):
        args = argparse.Namespace(lambda_logit=1.0, lambda_rep=1.0, depth_rep_target=args_target)
        assert run_msra_ner_ofa.distill_loss(full, teacher, mask, args, kept=[0, 1, 2, 3])[2] == 0.0


def test_frozen_word_embeddings_stay_the_teachers(trained, tmp_path):
    """--freeze_word_embeddings: every pair's saved supernet has the teacher's vocabulary table exactly, while
    the rest of the encoder trained (and without the flag the table moves too)."""
    teacher, _, _ = model_io.load_model_dir(trained["teacher"], ["teacher"])
    before = teacher.bert.embeddings.word_embeddings.weight.numpy()
    before_query = teacher.bert.encoder.layers[0].self_attn.q_proj.weight.numpy()
    for frozen in (True, False):
        out = tmp_path / f"frozen_{frozen}"
        run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(out), "--max_steps", "3",
                                       "--save_steps", "3", *(["--freeze_word_embeddings"] if frozen else [])))
        model, _, _ = model_io.load_model_dir(str(out / "model_1.0"), ["supernet"])
        table = model.bert.embeddings.word_embeddings.weight.numpy()
        assert np.array_equal(table, before) == frozen
        # a trained query projection (reordered by importance, so compare sorted values)
        query = model.bert.encoder.layers[0].self_attn.q_proj.weight.numpy()
        assert not np.allclose(np.sort(query, axis=None), np.sort(before_query, axis=None))


def test_stage_2_distils_on_the_unlabeled_file_too(trained, tmp_path):
    """--unlabeled_file: its sentences become stage-2 windows beside the labelled ones (one epoch is that many more
    batches), and lines that are dev or test sentences are dropped, not trained on."""
    from ner_ofa.training import batches_per_epoch

    dev, test = (read_ner_file(os.path.join(trained["data_dir"], f"{s}.tsv")) for s in ("dev", "test"))
    train = read_ner_file(os.path.join(trained["data_dir"], "train.tsv"))
    extra = ["".join(ex["chars"]) for ex in train[:70]] + ["".join(dev[0]["chars"]), "".join(test[3]["chars"])]
    path = tmp_path / "extra.txt"
    path.write_text("\n".join(extra) + "\n", encoding="utf-8")
    steps = {}
    for name, flags in (("without", []), ("with", ["--unlabeled_file", str(path)])):
        summary = run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(tmp_path / name),
                                                 "--max_steps", "0", "--num_train_epochs", "1", "--save_steps", "50",
                                                 *flags))
        steps[name] = summary["timing"]["steps"]
    def windows(examples):  # 46 characters a window at --max_seq_length 48
        return sum(-(-len(ex["chars"]) // 46) for ex in examples)

    assert summary["unlabeled"] == {"file": str(path), "sentences": 70, "windows": windows(train[:70]),
                                    "dropped_dev_or_test_lines": 2}
    assert steps == {"without": batches_per_epoch(windows(train), 16, 1),
                     "with": batches_per_epoch(windows(train) + windows(train[:70]), 16, 1)}
