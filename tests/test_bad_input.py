"""Bad input: one clear error (UserError in-process; one line and exit 2 on the command line), nothing written."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, export_args, ofa_args, teacher_args

import export_model_msra_ner_ofa as export_stage
import run_msra_ner
import run_msra_ner_ofa
from ner_ofa import cli, model_io, training

SEP = "\x02"


def bad_data(tmp_path, tiny_demo, name, content):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo["data_dir"], data)
    if content is None:
        os.remove(data / name)
    else:
        (data / name).write_text(content, encoding="utf-8")
    return str(data)


@pytest.mark.parametrize("name, content, message", [
    ("train.tsv", "张" + SEP + "三\tB-PER\n", r"train\.tsv:1: 2 characters but 1 labels"),
    ("test.tsv", "张" + SEP + "三\tB-XYZ" + SEP + "I-XYZ\n", r"test\.tsv:1: label 'B-XYZ' in test is not in the label set"),
    ("dev.tsv", "张\tB-FOO\n", r"dev\.tsv:1: label 'B-FOO' in dev"),
    ("test.tsv", "张" + SEP + "三\tO" + SEP + "I-XYZ\n", r"test\.tsv:1: label 'B-XYZ' in test is not in the label set"),  # I-XYZ starting an entity: read as IOB1, so B-XYZ
    ("train.tsv", "", r"train\.tsv: no sentences"),
    ("test.tsv", None, r"test\.tsv: data file not found"),
])
def test_teacher_bad_data(tmp_path, tiny_demo, name, content, message):
    data = bad_data(tmp_path, tiny_demo, name, content)
    out = tmp_path / "out"
    with pytest.raises(cli.UserError, match=message):
        run_msra_ner.main(teacher_args(data, tiny_demo["model_dir"], str(out)))
    assert not out.exists()


def test_model_dir_missing_config_or_weights(tmp_path, trained, tiny_demo):
    for missing, message in (("config.json", "no config.json"), (model_io.WEIGHTS_NAME, "no model_state.pdparams")):
        teacher = tmp_path / f"no_{missing}"
        shutil.copytree(trained["teacher"], teacher)
        os.remove(teacher / missing)
        with pytest.raises(cli.UserError, match=message):
            run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], str(teacher), str(tmp_path / "o")))
    config_only = tmp_path / "empty_model"
    config_only.mkdir()
    with pytest.raises(cli.UserError, match="no vocab.txt"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], str(config_only), str(tmp_path / "t")))
    assert not (tmp_path / "o").exists() and not (tmp_path / "t").exists()


def test_wrong_stage_directories(tmp_path, trained, tiny_demo):
    with pytest.raises(cli.UserError, match="holds a teacher"):
        export_stage.main(export_args(trained["teacher"], str(tmp_path / "e")))
    with pytest.raises(cli.UserError, match="holds a supernet"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], trained["model_0.5"], str(tmp_path / "t")))
    # stage 2 takes a teacher or (DynaBERT's second phase) a width-only supernet, never a cut sub-model
    export_stage.main(export_args(trained["model_0.5"], str(tmp_path / "cut"), static=False))
    with pytest.raises(cli.UserError, match="holds a sub_model"):
        run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], str(tmp_path / "cut" / "sub_model"), str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_width_not_in_supernet(tmp_path, trained):
    with pytest.raises(cli.UserError, match=r"--width_mult 0.75 is not one of the supernet's widths \[1.0, 0.5\]"):
        export_stage.main(export_args(trained["model_0.5"], str(tmp_path / "e"), width="0.75"))
    assert not (tmp_path / "e").exists()


def test_weights_not_matching_config(tmp_path, trained, tiny_demo):
    teacher = tmp_path / "teacher"
    shutil.copytree(trained["teacher"], teacher)
    config = model_io.read_json(str(teacher / "config.json"))
    config["intermediate_size"] = 32
    model_io.write_json(str(teacher / "config.json"), config)
    with pytest.raises(cli.UserError, match="has shape .* config implies"):
        run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], str(teacher), str(tmp_path / "o")))


@pytest.mark.parametrize("extra, message", [
    (["--max_seq_length", "2"], "at least 3"),
    (["--max_seq_length", "1000"], "exceeds the model's 128 positions"),
    (["--batch_size", "0"], "--batch_size must be positive"),
    (["--device", "gpu"], r"--device gpu: this Paddle is the CPU-only build; on a CUDA 11.8 machine run pip uninstall -y paddlepaddle && pip install paddlepaddle-gpu==3\.1\.1 -i https://www\.paddlepaddle\.org\.cn/packages/stable/cu118/"),
])
def test_teacher_bad_flags(tmp_path, tiny_demo, extra, message):
    import paddle

    if "gpu" in extra and paddle.device.cuda.device_count() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(cli.UserError, match=message):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(tmp_path / "o"), *extra))
    assert not (tmp_path / "o").exists()
    paddle.set_device("cpu")


def test_output_dir_is_a_file(tmp_path, tiny_demo):
    out = tmp_path / "file"
    out.write_text("keep me")
    with pytest.raises(cli.UserError, match="is not a directory"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(out)))
    assert out.read_text() == "keep me"


def test_ofa_width_list_without_full_width(tmp_path, trained, tiny_demo):
    args = ofa_args(tiny_demo["data_dir"], trained["teacher"], str(tmp_path / "o"))
    args.width_mult_list = [0.5, 0.25]
    with pytest.raises(cli.UserError, match="must contain 1.0"):
        run_msra_ner_ofa.main(args)


def test_command_line_error_is_one_line_exit_2(tmp_path, tiny_demo):
    data = bad_data(tmp_path, tiny_demo, "train.tsv", "张" + SEP + "三\tB-PER\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run_msra_ner.py"), "--model_name_or_path",
                           tiny_demo["model_dir"], "--data_dir", data, "--device", "cpu", "--output_dir", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.tsv:1: 2 characters but 1 labels" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_disk_too_small_fails_before_training(tmp_path, tiny_demo, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(training.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(cli.UserError, match="MiB free on disk, the run needs about"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(tmp_path / "o")))
    assert not (tmp_path / "o" / "model_best").exists()


def test_unwritable_output_dir(tmp_path, tiny_demo):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(cli.UserError, match="not writable"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(locked / "o")))


def test_unwritable_output_dir_as_file_parent(tmp_path, tiny_demo):
    """An output dir below a regular file cannot be created: a clear error, before training."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(cli.UserError, match="cannot create the output directory"):
        run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(blocker / "o")))


def test_predict_window_longer_than_the_models_positions(trained, tmp_path):
    """A teacher's or supernet's model_info.json does not record max_position_embeddings: the limit comes from
    its config.json, so predict (and serve, which loads through ner_ofa.NerPredictor) refuse in one line."""
    from ner_ofa.tools import predict

    for model_dir in (trained["teacher"], trained["model_0.5"]):
        assert "max_position_embeddings" not in model_io.read_model_info(model_dir)
        positions = model_io.read_json(os.path.join(model_dir, "config.json"))["max_position_embeddings"]
        with pytest.raises(cli.UserError, match=f"--max_seq_length {positions + 1} exceeds the model's {positions} "
                                                "positions"):
            predict.main(predict.parse_args(["--model_dir", model_dir, "--max_seq_length", str(positions + 1),
                                             "--text", "王伟在北京"]))
        from ner_ofa.predictor import load_logits_fn

        _, _, info = load_logits_fn(model_dir)
        assert info["max_position_embeddings"] == positions


def test_stage2_without_a_teacher_says_which_flag(tmp_path, capsys):
    """Stage 2 has no default teacher: without --model_name_or_path, argparse names the missing flag."""
    with pytest.raises(SystemExit) as exit_info:
        run_msra_ner_ofa.parse_args(["--output_dir", str(tmp_path / "o"), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --model_name_or_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_msra_ner_ofa.parse_args(["--help"])
    assert "OUTPUT_DIR/model_best (the original commands': ../tmp/msra_ner/model_best/)" in \
        " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "o").exists()


def test_quantize_never_writes_into_another_models_directory(tmp_path):
    from ner_ofa.tools import quantize as quantize_model

    static = tmp_path / "static"
    static.mkdir()
    model_io.write_json(str(static / model_io.INFO_NAME), {"kind": "static", "prefix": "model", "labels": ["O"]})
    (static / "model.json").write_text("{}")
    (static / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")  # enough to get past loading
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    model_io.write_json(str(teacher / model_io.INFO_NAME), {"kind": "teacher", "labels": ["O"]})
    (tmp_path / "a_file").write_text("keep me")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for output_dir, message in ((teacher, "holds a teacher model"),
                                (static / "int8", "is inside the static model's directory"),
                                (static, "is the static model's directory"),
                                (tmp_path / "a_file", "exists and is not a directory")):
        with pytest.raises(cli.UserError, match=message):
            quantize_model.main(quantize_model.parse_args(["--model_dir", str(static), "--output_dir", str(output_dir)]))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (static / "int8").exists()


def test_gpu_install_lines_uninstall_the_cpu_wheel_first():
    """Both wheels own paddle/: uninstalling the CPU wheel after installing the GPU one deletes the GPU one's files.
    Every place that tells the user how to get the GPU build says uninstall, then install."""
    import glob

    from conftest import REPO

    found = 0
    for path in [os.path.join(REPO, "README.md"), *glob.glob(os.path.join(REPO, "docs", "*.md"))]:
        for line in open(path, encoding="utf-8"):
            if "pip install paddlepaddle-gpu" in line:
                found += 1
                assert "pip uninstall -y paddlepaddle &&" in line.split("pip install paddlepaddle-gpu")[0], (path, line)
    assert found >= 2
    assert cli.GPU_INSTALL.index("uninstall -y paddlepaddle") < cli.GPU_INSTALL.index("install paddlepaddle-gpu")


@pytest.mark.parametrize("victim", ["teacher", "other"])
def test_export_refuses_a_sub_model_dir_that_is_not_its_own(trained, tmp_path, victim):
    """A typo naming the teacher's model_best/ (or any non-empty directory) as --sub_model_output_dir used to
    replace it; now one line, and nothing in it changes."""
    if victim == "teacher":
        target = tmp_path / "model_best"
        shutil.copytree(trained["teacher"], target)
    else:
        target = tmp_path / "notes"
        target.mkdir()
        (target / "keep.txt").write_text("mine", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    args = export_args(trained["model_0.5"], str(tmp_path / "e"))
    args.sub_model_output_dir = str(target)
    with pytest.raises(cli.UserError, match="--sub_model_output_dir .* exists and holds"):
        export_stage.main(args)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    # its own sub-model directory may be exported again
    args.sub_model_output_dir = str(tmp_path / "e" / "sub_model")
    export_stage.main(args)
    export_stage.main(export_args(trained["model_0.5"], str(tmp_path / "e")))
