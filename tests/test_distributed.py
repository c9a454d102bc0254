"""Scale-out on Paddle's collective backend for the CPU: 2 processes under paddle.distributed.launch."""
import argparse
import glob
import os
import re
import subprocess

import pytest

from conftest import REPO

from ner_ofa.data import load_splits, read_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa.scoring import evaluate
from ner_ofa import backends, distributed, model_io


def launch(script, log_dir, *args):
    cmd = [*distributed.launch_command(2, log_dir), os.path.join(REPO, script), "--device", "cpu", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    logs = {os.path.basename(p): open(p, encoding="utf-8", errors="replace").read()
            for p in glob.glob(os.path.join(str(log_dir), "workerlog.*"))}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + "".join(logs.values())[-3000:]
    sums = {}
    for name, text in logs.items():
        found = re.findall(r"rank (\d): step (\d+) weights checksum (\w+)", text)
        assert found, f"{name} has no checksum line"
        sums[found[-1][0]] = found[-1][1:]
    return sums, logs


def test_two_processes_agree_and_only_rank0_writes(tiny_demo, tmp_path):
    common = ["--data_dir", tiny_demo["data_dir"], "--max_seq_length", "48", "--batch_size", "8",
              "--logging_steps", "2", "--save_steps", "3"]
    sums, logs = launch("run_msra_ner.py", tmp_path / "log1", "--model_name_or_path", tiny_demo["model_dir"],
                        "--max_steps", "6", "--output_dir", str(tmp_path / "t"), *common)
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"] and sums["0"][0] == "6"
    assert "new best, saved" in logs["workerlog.0"] and "new best, saved" not in logs["workerlog.1"]
    assert sorted(os.listdir(tmp_path / "t")) == ["args.json", "checkpoint", "metrics.json", "model_best", "train.log",
                                                  "visualdl"]
    # both processes scored dev and test, each its share of the sentences: the sums are what one process gets
    metrics = model_io.read_json(str(tmp_path / "t" / "model_best" / "metrics.json"))
    model, tokenizer, info = backends.load_inference_model(str(tmp_path / "t" / "model_best"))
    data = load_splits(argparse.Namespace(data_dir=tiny_demo["data_dir"], dev_ratio=0.1, seed=42),
                       label_list=info["labels"])
    for split in ("dev", "test"):
        alone = evaluate(backends.dynamic_logits_fn(model), data[split], CharEncoder(tokenizer), info["labels"], 48, 8)
        assert metrics[split] == alone and alone["sentences"] == len(data[split]) > 1 and alone["gold_chunks"], split

    sums, logs = launch("run_msra_ner_ofa.py", tmp_path / "log2", "--model_name_or_path",
                        str(tmp_path / "t" / "model_best"), "--max_steps", "4", "--width_mult_list", "1.0", "0.5",
                        "--output_dir", str(tmp_path / "o"), *common)
    assert sums["0"] == sums["1"], sums
    assert sorted(os.listdir(tmp_path / "o")) == ["args.json", "checkpoint", "model_0.5", "model_1.0", "summary.json",
                                                  "train.log", "visualdl"]
    # the width-0.5 test F1 rank 0 reported is that of the model it saved, scored here at its width
    summary = model_io.read_json(str(tmp_path / "o" / "summary.json"))["pairs"]["0.5"]
    model, tokenizer, info = backends.load_inference_model(str(tmp_path / "o" / "model_0.5"))
    test = read_ner_file(os.path.join(tiny_demo["data_dir"], "test.tsv"))
    scores = evaluate(backends.dynamic_logits_fn(model), test, CharEncoder(tokenizer), info["labels"], 48, 8)
    assert scores["f1"] == summary["test_f1"] and scores["gold_chunks"] > 0


@pytest.mark.parametrize("frozen", [[], ["--freeze_word_embeddings"]], ids=["trained", "frozen_embeddings"])
def test_two_processes_agree_at_every_depth(trained, tmp_path, frozen):
    """Depth < 1 skips layers: their parameters get no gradient in that pass (DataParallel's unused parameters),
    and gradients of all but the last pair of a step are accumulated locally (no_sync). With 3 of the 4 (width,
    depth) pairs drawn a step, both processes must still end with the same weights, and rank 0's saves must be
    what the pairs score; also with the word embeddings frozen (a parameter without gradient)."""
    common = ["--data_dir", trained["data_dir"], "--max_seq_length", "48", "--batch_size", "8", "--logging_steps", "2",
              "--save_steps", "3"]
    sums, logs = launch("run_msra_ner_ofa.py", tmp_path / "log", "--model_name_or_path", trained["teacher"],
                        "--max_steps", "6", "--width_mult_list", "1.0", "0.5", "--depth_mult_list", "1.0", "0.5",
                        "--pairs_per_step", "3", "--output_dir", str(tmp_path / "o"), *common, *frozen)
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"] and sums["0"][0] == "6", sums
    summary = model_io.read_json(str(tmp_path / "o" / "summary.json"))["pairs"]
    assert sorted(summary) == ["0.5_0.5", "0.5_1.0", "1.0_0.5", "1.0_1.0"]
    model, tokenizer, info = backends.load_inference_model(str(tmp_path / "o" / "model_0.5_0.5"))
    test = read_ner_file(os.path.join(trained["data_dir"], "test.tsv"))
    scores = evaluate(backends.dynamic_logits_fn(model), test, CharEncoder(tokenizer), info["labels"], 48, 8)
    assert scores["f1"] == summary["0.5_0.5"]["test_f1"]


def test_barrier_waits_longer_than_gloos_30_seconds(tmp_path):
    """Rank 0 alone evaluates dev or scores test while the others wait at a barrier: on the CPU, gloo's own
    barrier gives up after 30 s; distributed.barrier must wait as long as it takes."""
    script = tmp_path / "wait.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from ner_ofa import distributed\n"
        "rank, world_size = distributed.init_distributed()\n"
        "start = time.time()\n"
        "time.sleep(35 if rank == 0 else 0)\n"
        "distributed.barrier(world_size)\n"
        "print(f'rank {rank} passed after {time.time() - start:.0f} s', flush=True)\n"
        "time.sleep(1 if rank == 0 else 0)\n"
        "distributed.barrier(world_size)  # rank 0, whose process holds the store, arrives last and exits at once\n"
        "print(f'rank {rank} done', flush=True)\n", encoding="utf-8")
    cmd = [*distributed.launch_command(2, tmp_path / "log"), str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    logs = "".join(open(p, encoding="utf-8", errors="replace").read()
                   for p in sorted(glob.glob(str(tmp_path / "log" / "workerlog.*"))))
    assert proc.returncode == 0, logs[-3000:]
    waited = {int(r): int(t) for r, t in re.findall(r"rank (\d) passed after (\d+) s", logs)}
    assert waited.keys() == {0, 1} and waited[1] >= 34, logs[-2000:]
    assert "rank 0 done" in logs and "rank 1 done" in logs
