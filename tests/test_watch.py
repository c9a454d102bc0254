"""Watching a run: the step line's ETA, OUTPUT_DIR/train.log, args.json at the start, VisualDL scalars, and the
first lines a user sees being the project's."""
import glob
import os

import pytest

import run_msra_ner
import run_msra_ner_ofa
from conftest import ofa_args, teacher_args
from ner_ofa import model_io, training


def scalars(output_dir, tag):
    from visualdl import LogReader

    [path] = glob.glob(os.path.join(output_dir, "visualdl", "vdlrecords.*"))
    return [(record.id, record.value) for record in LogReader(file_path=path).get_data("scalar", tag)]


def test_teacher_run_leaves_log_args_and_curves(tiny_demo, tmp_path):
    out = tmp_path / "t"
    result = run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), "--max_steps", "20",
                                            "--logging_steps", "5", "--save_steps", "10"))
    log = (out / "train.log").read_text(encoding="utf-8")
    step_lines = [line for line in log.splitlines() if " INFO step " in line]
    assert len(step_lines) == 4 and all("samples/s | elapsed " in line and ", ETA " in line for line in step_lines)
    assert "dev step 20 epoch" in log and "test (best dev step" in log
    record = model_io.read_json(str(out / "args.json"))
    assert record["args"]["max_steps"] == 20 and record["versions"]["paddlenlp"] == "2.8.1"
    assert [step for step, _ in scalars(str(out), "train/loss")] == [5, 10, 15, 20]
    assert [round(f1, 6) for _, f1 in scalars(str(out), "dev/f1")] == \
        [round(point["dev"]["f1"], 6) for point in result["curve"]]


def test_args_json_is_written_at_the_start(tiny_demo, tmp_path, monkeypatch):
    """A run stopped before its first evaluation still says how it was started."""
    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "run", stop)
    out = tmp_path / "t"
    with pytest.raises(KeyboardInterrupt):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out), "--max_steps", "5"))
    assert not (out / "model_best").exists()
    assert model_io.read_json(str(out / "args.json"))["versions"]["paddle"].startswith("3.")


def test_ofa_dev_f1_per_width_in_visualdl(trained, tmp_path):
    summary = run_msra_ner_ofa.main(ofa_args(trained["data_dir"], trained["teacher"], str(tmp_path / "o"),
                                             "--max_steps", "4", "--save_steps", "2"))
    for width in ("1.0", "0.5"):
        curve = [round(point[width], 6) for point in summary["curve"]]
        assert [round(v, 6) for _, v in scalars(str(tmp_path / "o"), f"dev/f1_pair_{width}")] == curve
    assert [s for s, _ in scalars(str(tmp_path / "o"), "train/rep")] == [4]
