"""Faults: interrupted saves leave loadable models, --resume repeats the uninterrupted run, same seed same F1."""
import os
import subprocess
import sys

import pytest
from conftest import REPO, ofa_args, teacher_args

import run_msra_ner
import run_msra_ner_ofa
from ner_ofa.data import load_splits
from ner_ofa.features import CharEncoder
from ner_ofa import scoring
from ner_ofa.scoring import evaluate
from ner_ofa import backends, cli, model_io, training


def interrupted_after_checkpoint(stop_step, run, args):
    """Run ``run(args)`` until right after its checkpoint of ``stop_step`` is written, then interrupt it."""
    original = training.save_checkpoint

    def save_then_stop(output_dir, model, optimizer, trainer_state):
        original(output_dir, model, optimizer, trainer_state)
        if trainer_state["step"] >= stop_step:
            raise KeyboardInterrupt

    training.save_checkpoint = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run(args)
    finally:
        training.save_checkpoint = original


def curve_f1(result_curve):
    return [point["dev"]["f1"] for point in result_curve]


def test_same_seed_same_dev_f1(tiny_demo, tmp_path):
    runs = [run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(tmp_path / f"r{i}"),
                                           "--max_steps", "30", "--save_steps", "15")) for i in range(2)]
    assert curve_f1(runs[0]["curve"]) == curve_f1(runs[1]["curve"])
    assert runs[0]["test"]["f1"] == runs[1]["test"]["f1"]


def test_teacher_resume_equals_uninterrupted(tiny_demo, tmp_path):
    full = run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(tmp_path / "full"),
                                          "--max_steps", "40", "--save_steps", "10"))
    # the same run (same 40-step schedule) interrupted right after its step-20 checkpoint, then resumed
    part = tmp_path / "part"
    args = teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(part), "--max_steps", "40", "--save_steps", "10")
    interrupted_after_checkpoint(20, run_msra_ner.main, args)
    assert model_io.read_json(str(part / "checkpoint" / "trainer_state.json"))["step"] == 20
    resumed = run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(part),
                                             "--max_steps", "40", "--save_steps", "10", "--resume"))
    assert curve_f1(resumed["curve"]) == curve_f1(full["curve"])
    assert resumed["best_step"] == full["best_step"] and resumed["test"]["f1"] == full["test"]["f1"]


def test_ofa_resume_equals_uninterrupted(tiny_demo, tmp_path):
    teacher_dir = tmp_path / "t"
    run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(teacher_dir), "--max_steps", "20"))
    teacher = str(teacher_dir / "model_best")
    full = run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(tmp_path / "full"), "--max_steps", "12",
                                          "--save_steps", "4"))
    interrupted_after_checkpoint(8, run_msra_ner_ofa.main, ofa_args(tiny_demo["data_dir"], teacher, str(tmp_path / "part"),
                                                                    "--max_steps", "12", "--save_steps", "4"))
    resumed = run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(tmp_path / "part"), "--max_steps",
                                             "12", "--save_steps", "4", "--resume"))
    assert resumed["curve"] == full["curve"]
    assert resumed["pairs"]["0.5"]["test_f1"] == full["pairs"]["0.5"]["test_f1"]


def test_interrupted_swap_is_recovered_by_the_owning_run_only(tmp_path, tiny_demo):
    """A crash between the two renames of a save leaves model_best.old<pid>: a reader says so and changes
    nothing; the run that owns the directory puts it back at its start (--resume), and goes on from it."""
    out = tmp_path / "t"
    args = ("--max_steps", "6", "--save_steps", "3")
    run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), *args))
    best = out / "model_best"
    metrics = model_io.read_json(str(best / "metrics.json"))
    os.rename(best, str(best) + ".old12345")
    (out / "model_best.tmp12345").mkdir()  # a half-written new one
    with pytest.raises(cli.UserError, match=r"model_best\.old12345, model_best\.tmp12345 beside it"):
        model_io.load_model_dir(str(best), ["teacher"])
    assert (out / "model_best.old12345").is_dir() and (out / "model_best.tmp12345").is_dir()
    resumed = run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), *args,
                                             "--resume"))
    assert sorted(os.listdir(out)) == ["args.json", "checkpoint", "metrics.json", "model_best", "train.log", "visualdl"]
    assert resumed["best_step"] == metrics["step"]
    assert model_io.read_json(str(best / "metrics.json"))["dev"] == metrics["dev"]


KILL_BETWEEN_RENAMES = """
import os, sys
sys.path.insert(0, {repo!r})
import run_msra_ner
rename = os.rename

def rename_then_die(src, dst):
    rename(src, dst)
    if os.path.basename(dst).startswith("model_best.old"):
        os._exit(9)  # between the two renames of swap_into_place: model_best/ is absent now

os.rename = rename_then_die
run_msra_ner.main(run_msra_ner.parse_args({argv!r}))
"""


def test_killed_inside_the_swap_leaves_the_previous_best_recoverable(tiny_demo, tmp_path):
    """Die exactly between the two renames of a model_best save (the only moment model_best/ is absent):
    a reader says what happened and changes nothing; the owning run's next start puts the previous best back,
    which then loads and scores what its metrics.json says."""
    out = tmp_path / "t"
    argv = ["--model_name_or_path", tiny_demo["model_dir"], "--data_dir", tiny_demo["data_dir"], "--device", "cpu",
            "--max_seq_length", "48", "--batch_size", "16", "--learning_rate", "5e-3", "--max_steps", "60",
            "--save_steps", "5", "--logging_steps", "50", "--output_dir", str(out)]
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES.format(repo=REPO, argv=argv)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr[-2000:]
    leftovers = model_io.interrupted_save_leftovers(str(out / "model_best"))
    assert not (out / "model_best").exists() and [n for n in leftovers if ".old" in n], leftovers
    with pytest.raises(cli.UserError, match="a save is in progress or was interrupted"):
        model_io.load_model_dir(str(out / "model_best"), ["teacher"])
    assert model_io.interrupted_save_leftovers(str(out / "model_best")) == leftovers  # the reader changed nothing
    training.recover_run_outputs(str(out), ["model_best"], rank=0, world_size=1)  # what the run does at its start
    assert model_io.interrupted_save_leftovers(str(out / "model_best")) == []
    model, tokenizer, info = model_io.load_model_dir(str(out / "model_best"), ["teacher"])
    metrics = model_io.read_json(str(out / "model_best" / "metrics.json"))
    data = load_splits(type("A", (), {"data_dir": tiny_demo["data_dir"], "dev_ratio": 0.1, "seed": 42}),
                             label_list=info["labels"])
    model.eval()
    scores = evaluate(backends.dynamic_logits_fn(model), data["dev"], CharEncoder(tokenizer), info["labels"],
                            48, 16)
    assert scores["f1"] == metrics["dev"]["f1"]


def dev_f1_schedule(monkeypatch, f1_of_call):
    """Dev scores whose F1 is ``f1_of_call(n)`` for the n-th dev evaluation (test scores stay real): lets a test
    choose which evaluations improve, as a rerun that does not repeat exactly (a GPU) would."""
    original, calls = scoring.evaluate, []

    def evaluate(logits_fn, examples, *rest, **options):
        scores = original(logits_fn, examples, *rest, **options)
        if os.path.basename(examples[0]["where"]).startswith("dev.tsv"):
            calls.append(1)
            scores = dict(scores, f1=f1_of_call(len(calls)))
        return scores

    monkeypatch.setattr(scoring, "evaluate", evaluate)


def crashed_before_checkpoint(monkeypatch, step, run, args):
    """Run ``run(args)`` until just before its checkpoint of ``step`` is written -- after the best models of
    that step were saved -- and kill it there."""
    original = training.save_checkpoint

    def crash(output_dir, model, optimizer, trainer_state):
        if trainer_state["step"] == step:
            raise KeyboardInterrupt
        original(output_dir, model, optimizer, trainer_state)

    monkeypatch.setattr(training, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        run(args)
    monkeypatch.setattr(training, "save_checkpoint", original)


@pytest.mark.parametrize("stage", ["teacher", "supernet"])
def test_crash_between_best_save_and_checkpoint(stage, tiny_demo, trained, tmp_path, monkeypatch):
    """Every evaluation improves in the crashed run (bests saved at steps 2 and 4, the checkpoint of step 4
    never written); the resumed run's evaluations never do. The resumed run must report, and score on test, the
    models its directories hold: step 4's, not the checkpoint's step 2."""
    out = tmp_path / "out"
    if stage == "teacher":
        run = run_msra_ner.main

        def args(*extra):
            return teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), "--max_steps", "6",
                                "--save_steps", "2", *extra)
    else:
        run = run_msra_ner_ofa.main

        def args(*extra):
            return ofa_args(tiny_demo["data_dir"], trained["teacher"], str(out), "--max_steps", "6", "--save_steps",
                            "2", *extra)
    dev_f1_schedule(monkeypatch, lambda n: 0.1 * n)
    crashed_before_checkpoint(monkeypatch, 4, run, args())
    assert model_io.read_json(str(out / "checkpoint" / "trainer_state.json"))["step"] == 2
    dev_f1_schedule(monkeypatch, lambda n: 0.01)
    result = run(args("--resume"))
    rows = [(result, out / "model_best")] if stage == "teacher" else \
        [(row, out / f"model_{name}") for name, row in result["pairs"].items()]
    for row, kept in rows:
        saved = model_io.read_json(str(kept / "metrics.json"))
        assert saved["step"] == 4 and "test" in saved
        best_step = row["best_step"]
        best_f1 = row["best_dev_f1"] if stage == "teacher" else row["dev_f1"]
        assert (best_step, best_f1) == (saved["step"], saved["dev"]["f1"]), kept
