"""How much sharing dev/test scoring among the data-parallel processes saves: one model directory scored on a
split, first by one process with one thread (what rank 0 did alone while the others waited), then by --procs
processes of one thread each, each on its share of the sentences (what the stages do now). Prints both times and
both scores (they must be equal) as JSON.

    python scripts/eval_split_speed.py --model_dir ../tmp/msra_subset_run/teacher/model_best \\
        --data_dir ../shared/data/msra_ner --split dev
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
os.environ["OMP_NUM_THREADS"] = "1"  # one thread per process, as under the stages' launch

from ner_ofa import backends, cli, distributed, model_io, scoring, timing  # noqa: E402
from ner_ofa.data import load_splits  # noqa: E402
from ner_ofa.features import CharEncoder  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--model_dir", required=True, help="a model directory (teacher or sub-model)")
    p.add_argument("--data_dir", required=True, help="the data the stages read")
    p.add_argument("--split", choices=["dev", "test"], default="dev", help="which split to score")
    p.add_argument("--procs", type=int, default=2, help="processes sharing the scoring")
    p.add_argument("--batch_size", type=int, default=16, help="windows per batch (the stages' per-process size)")
    p.add_argument("--max_seq_length", type=int, default=128, help="window length")
    p.add_argument("--shapes", choices=["exact", "buckets"], default="exact",
                   help="batches unpadded (what the stages' dygraph scoring runs) or padded to shape buckets")
    p.add_argument("--worker_output", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def score(args, ranks):
    import paddle

    paddle.set_device("cpu")
    model, tokenizer, info = backends.load_inference_model(args.model_dir)
    model.eval()
    data = load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=0.1, seed=42), label_list=info["labels"])
    start = time.perf_counter()
    scores = scoring.evaluate(backends.dynamic_logits_fn(model), data[args.split], CharEncoder(tokenizer),
                              info["labels"], args.max_seq_length, args.batch_size, ranks, shapes=args.shapes)
    return scores, time.perf_counter() - start


def main(args):
    if args.worker_output:  # one of the --procs processes
        rank, world_size = distributed.init_distributed()
        scores, seconds = score(args, distributed.Ranks(rank, world_size))
        # rank 0's time includes waiting for the others: the counts are summed at the end
        if rank == 0:
            model_io.write_json(args.worker_output, {"scores": scores, "seconds": round(seconds, 2)})
        return None
    alone, alone_seconds = score(args, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "shared.json")
        cmd = [*distributed.launch_command(args.procs, os.path.join(tmp, "log")), os.path.abspath(__file__),
               "--model_dir", args.model_dir, "--data_dir", args.data_dir, "--split", args.split, "--batch_size",
               str(args.batch_size), "--max_seq_length", str(args.max_seq_length), "--shapes", args.shapes,
               "--worker_output", out]
        subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        shared = model_io.read_json(out)
    result = {"split": args.split, "shapes": args.shapes, "sentences": alone["sentences"], "hardware": timing.hardware(),
              "one_process_seconds": round(alone_seconds, 2), f"{args.procs}_processes_seconds": shared["seconds"],
              "speed_up": round(alone_seconds / shared["seconds"], 2), "same_scores": alone == shared["scores"],
              "f1": alone["f1"]}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
