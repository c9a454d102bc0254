"""Stage-2 recipes side by side: each variant is run_msra_ner_ofa.py on one trained teacher, the same data, steps
and seed, with a few of its flags changed; the dev curve and test F1 of every pair go into one JSON file.

A variant is NAME=FLAGS, e.g. ``rep1="--lambda_rep 1.0"``; ``base=`` runs the defaults given by the other options.
Variants run one after another on --procs processes, each in WORK_DIR/NAME/ (a finished variant is read again,
not rerun, so an interrupted study continues where it stopped).

    python scripts/stage2_variants.py --teacher_dir ../tmp/msra_subset_run/teacher/model_best \\
        --data_dir ../tmp/msra_subset_5000 --max_steps 324 --save_steps 162 \\
        --variant base= --variant rep1="--lambda_rep 1.0" --variant last="--depth_rep_target last"
"""
import argparse
import os
import shlex
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli, model_io, stages, timing  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--teacher_dir", required=True, help="a stage-1 model_best/ directory")
    p.add_argument("--data_dir", required=True, help="the teacher's data directory (its dev split is re-drawn)")
    p.add_argument("--work_dir", required=True, help="each variant's stage-2 output goes to WORK_DIR/NAME/")
    p.add_argument("--results", required=True, help="the JSON file written")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=FLAGS",
                   help="a name and the stage-2 flags it changes (may repeat; FLAGS may be empty)")
    p.add_argument("--max_steps", type=int, default=324, help="stage-2 steps of every variant")
    p.add_argument("--save_steps", type=int, default=162, help="dev evaluation interval")
    p.add_argument("--learning_rate", type=float, default=2e-4, help="stage 2's peak learning rate")
    p.add_argument("--width_mult_list", type=float, nargs="+", default=[1.0, 0.75, 0.5], help="widths")
    p.add_argument("--depth_mult_list", type=float, nargs="+", default=[1.0, 0.5], help="depths")
    p.add_argument("--pairs_per_step", type=int, default=3, help="stage 2's --pairs_per_step")
    p.add_argument("--batch_size", type=int, default=16, help="windows a step per process")
    p.add_argument("--procs", type=int, default=2, help="data-parallel processes (one thread each)")
    p.add_argument("--seed", type=int, default=42, help="seed of every variant")
    args = p.parse_args(argv)
    variants = {}
    for text in args.variant:
        name, sep, flags = text.partition("=")
        if not sep or not name or "/" in name or name in variants:
            p.error(f"--variant {text!r}: give NAME=FLAGS with a new name and no '/'")
        variants[name] = shlex.split(flags)
    args.variants = variants
    no_test = argparse.ArgumentParser(add_help=False)  # read as stage 2's argparse reads it (abbreviations too)
    no_test.add_argument("--no_test", action="store_true")
    for name, flags in variants.items():
        if no_test.parse_known_args(flags)[0].no_test:
            p.error(f"--variant {name}: the variants are compared on test F1; --no_test would leave none")
    return args


def variant_argv(args, name, flags):
    """The stage-2 command line of one variant: the shared options, then the variant's own (the last one wins)."""
    return ["--model_name_or_path", args.teacher_dir, "--data_dir", args.data_dir, "--device", "cpu",
            "--output_dir", os.path.join(args.work_dir, name), "--max_steps", str(args.max_steps),
            "--save_steps", str(args.save_steps), "--logging_steps", "100", "--learning_rate", str(args.learning_rate),
            "--width_mult_list", *map(str, args.width_mult_list), "--depth_mult_list", *map(str, args.depth_mult_list),
            "--pairs_per_step", str(args.pairs_per_step), "--batch_size", str(args.batch_size),
            "--importance_batches", str(50 * args.procs), "--seed", str(args.seed), *flags]


def main(args):
    teacher_metrics = model_io.read_json(os.path.join(os.path.dirname(os.path.abspath(args.teacher_dir)),
                                                      "metrics.json"))
    teacher_test = teacher_metrics.get("test", {}).get("f1")
    results = {"command": " ".join(["python", "scripts/stage2_variants.py", *map(shlex.quote, sys.argv[1:])]),
               "hardware": timing.hardware(), "teacher_dir": args.teacher_dir, "teacher_test_f1": teacher_test,
               "max_steps": args.max_steps, "variants": {}}
    for name, flags in args.variants.items():
        summary_path = os.path.join(args.work_dir, name, "summary.json")
        started = time.time()
        if not os.path.exists(summary_path):
            stages.run_stage("run_msra_ner_ofa.py", variant_argv(args, name, flags), procs=args.procs,
                             log_dir=os.path.join(args.work_dir, "launch_logs", name))
        summary = model_io.read_json(summary_path)
        pairs = {pair: {"dev_f1": row["dev_f1"], "best_step": row["best_step"], "test_f1": row["test_f1"],
                        "test_of_teacher": row["test_f1"] / teacher_test if teacher_test else None}
                 for pair, row in summary["pairs"].items()}
        results["variants"][name] = {"flags": flags, "pairs": pairs, "dev_curve": summary["curve"],
                                     "stage_seconds": summary.get("seconds"),
                                     "wall_seconds_this_call": round(time.time() - started, 1)}
        model_io.write_json(args.results, results)
        cli.logger.info("variant %s: test F1 %s", name,
                        " ".join(f"{pair}={row['test_f1']:.4f}" for pair, row in pairs.items()))
    return results


if __name__ == "__main__":
    cli.run_main(main, parse_args)
