"""Faults: interrupted saves leave loadable models, --resume repeats the uninterrupted run, same seed same F1."""
import os
import signal
import subprocess
import sys
import time

import pytest

import run_msra_ner
import run_msra_ner_ofa
import utils
from conftest import REPO
from test_pipeline import ofa_args, teacher_args


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
    stop_after = {"step": 20}
    original = utils.save_checkpoint

    def save_then_stop(output_dir, model, optimizer, trainer_state):
        original(output_dir, model, optimizer, trainer_state)
        if trainer_state["step"] >= stop_after["step"]:
            raise KeyboardInterrupt

    utils.save_checkpoint = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run_msra_ner.main(args)
    finally:
        utils.save_checkpoint = original
    assert utils.read_json(str(part / "checkpoint" / "trainer_state.json"))["step"] == 20
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
    original = utils.save_checkpoint

    def save_then_stop(output_dir, model, optimizer, trainer_state):
        original(output_dir, model, optimizer, trainer_state)
        if trainer_state["step"] >= 8:
            raise KeyboardInterrupt

    utils.save_checkpoint = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(tmp_path / "part"), "--max_steps", "12",
                                           "--save_steps", "4"))
    finally:
        utils.save_checkpoint = original
    resumed = run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(tmp_path / "part"), "--max_steps",
                                             "12", "--save_steps", "4", "--resume"))
    assert resumed["curve"] == full["curve"]
    assert resumed["widths"]["0.5"]["test_f1"] == full["widths"]["0.5"]["test_f1"]


def test_interrupted_swap_is_recovered(tmp_path, tiny_demo):
    """A crash between the two renames of a save leaves model_best.old<pid>: loading puts it back."""
    out = tmp_path / "t"
    run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), "--max_steps", "5"))
    best = out / "model_best"
    metrics = utils.read_json(str(best / "metrics.json"))
    os.rename(best, str(best) + ".old12345")
    (out / "model_best.tmp12345").mkdir()  # a half-written new one
    model, _, info = utils.load_model_dir(str(best), ["teacher"])
    assert info["kind"] == "teacher" and utils.read_json(str(best / "metrics.json")) == metrics
    assert not (out / "model_best.tmp12345").exists()


def test_killed_during_save_leaves_previous_best_loadable(tiny_demo, tmp_path):
    """SIGKILL a real run many times at random moments; model_best must always load and match its metrics."""
    out = tmp_path / "t"
    cmd = [sys.executable, os.path.join(REPO, "run_msra_ner.py"), "--model_name_or_path", tiny_demo["model_dir"],
           "--data_dir", tiny_demo["data_dir"], "--device", "cpu", "--max_seq_length", "48", "--batch_size", "16",
           "--learning_rate", "5e-3", "--max_steps", "400", "--save_steps", "1", "--logging_steps", "50",
           "--output_dir", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "model_best" / "metrics.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # saving every step: the kill lands in or near a save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model, tokenizer, info = utils.load_model_dir(str(out / "model_best"), ["teacher"])
    metrics = utils.read_json(str(out / "model_best" / "metrics.json"))
    data = utils.load_splits(type("A", (), {"data_dir": tiny_demo["data_dir"], "dev_ratio": 0.1, "seed": 42}),
                             label_list=info["labels"])
    model.eval()
    scores = utils.evaluate(utils.dynamic_logits_fn(model), data["dev"], utils.CharEncoder(tokenizer), info["labels"],
                            48, 16)
    assert scores["f1"] == pytest.approx(metrics["dev"]["f1"], abs=1e-9)
