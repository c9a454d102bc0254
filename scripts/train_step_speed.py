"""How fast a training step runs on this CPU: one process with N threads against N processes with one thread each.

A BERT token classifier (random weights, no dropout) does forward + cross-entropy + backward + AdamW on random
batches of one fixed length; the median step time of the last --steps - 5 steps is reported for:
  1 process x 1 thread (batch B) | 1 process x 2 threads (batch B) | 1 process x 2 threads (batch 2B) |
  2 processes x 1 thread (paddle.distributed.launch, DataParallel, batch B/2 each: the same B windows a step).

    python scripts/train_step_speed.py                  # 4 layers, hidden 256, 8 heads, FFN 1024, B 32 x 52
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli, distributed  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--num_layers", type=int, default=4, help="encoder layers")
    p.add_argument("--hidden_size", type=int, default=256, help="hidden size")
    p.add_argument("--num_heads", type=int, default=8, help="attention heads")
    p.add_argument("--intermediate_size", type=int, default=1024, help="FFN neurons per layer")
    p.add_argument("--vocab_size", type=int, default=4601, help="embedding rows (the MSRA train-character vocab)")
    p.add_argument("--batch_size", type=int, default=32, help="windows a step (B)")
    p.add_argument("--seq_len", type=int, default=52, help="tokens a window (MSRA's mean sentence is ~50 chars)")
    p.add_argument("--steps", type=int, default=25, help="steps per setting, the first 5 not counted")
    p.add_argument("--worker", action="store_true", help="time one setting in this process (what the script starts)")
    args = p.parse_args(argv)
    if args.steps <= 5 or args.batch_size % 2:
        p.error("--steps must be over 5 (the first 5 are not counted) and --batch_size even (split in 2)")
    return args


def worker(args):
    """One setting, in this process (or one rank of a launch): prints a JSON line with the median step time."""
    import numpy as np
    import paddle
    from paddlenlp.transformers import BertConfig, BertForTokenClassification

    world_size = paddle.distributed.get_world_size()
    paddle.seed(0)
    config = BertConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                        num_attention_heads=args.num_heads, intermediate_size=args.intermediate_size,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=7)
    model = BertForTokenClassification(config)
    if world_size > 1:
        paddle.distributed.init_parallel_env()
        model = paddle.DataParallel(model)
    optimizer = paddle.optimizer.AdamW(1e-3, parameters=model.parameters())
    rng = np.random.RandomState(paddle.distributed.get_rank())
    shape = (args.batch_size // world_size, args.seq_len)
    input_ids = paddle.to_tensor(rng.randint(1, args.vocab_size, shape).astype("int64"))
    labels = paddle.to_tensor(rng.randint(0, 7, shape + (1,)).astype("int64"))
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = paddle.nn.functional.cross_entropy(model(input_ids), labels).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        times.append(time.perf_counter() - start)
    if paddle.distributed.get_rank() == 0:
        print(json.dumps({"step_seconds": float(np.median(times[5:]))}), flush=True)


def run_setting(args, procs, threads, batch_size):
    argv = [os.path.abspath(__file__), "--worker", "--batch_size", str(batch_size), "--steps", str(args.steps),
            "--num_layers", str(args.num_layers), "--hidden_size", str(args.hidden_size), "--num_heads",
            str(args.num_heads), "--intermediate_size", str(args.intermediate_size), "--vocab_size",
            str(args.vocab_size), "--seq_len", str(args.seq_len)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as logs:
        start = distributed.launch_command(procs, logs) if procs > 1 else [sys.executable]
        proc = subprocess.run([*start, *argv], capture_output=True, text=True, env=env)
        log = os.path.join(logs, "workerlog.0")
        out = proc.stdout + (open(log, encoding="utf-8").read() if os.path.isfile(log) else "")
    lines = [line for line in out.splitlines() if line.startswith('{"step_seconds"')]
    if proc.returncode != 0 or not lines:
        raise cli.UserError(f"the setting {procs} x {threads} failed: {(proc.stderr or out)[-500:]}")
    return json.loads(lines[-1])["step_seconds"]


def main(args):
    if args.worker:
        return worker(args)
    b = args.batch_size
    rows = []
    for procs, threads, batch in ((1, 1, b), (1, 2, b), (1, 2, 2 * b), (2, 1, b)):
        seconds = run_setting(args, procs, threads, batch)
        rows.append({"processes": procs, "threads_each": threads, "windows_per_step": batch, "step_seconds": seconds,
                     "windows_per_second": batch / seconds})
        cli.logger.info("%d process(es) x %d thread(s), %d windows a step: %.3f s a step, %.1f windows/s", procs,
                        threads, batch, seconds, batch / seconds)
    base = rows[1]["windows_per_second"]
    for row in rows:
        row["throughput_vs_1x2"] = round(row["windows_per_second"] / base, 2)
    print(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    cli.setup_logging()
    cli.run_main(main, parse_args)
