"""Which layers should a depth keep? Paddle's DynaBERT rule against the DynaBERT paper's, on dev.

Paddle's DynaBERT scripts keep layers floor(i / d) - 1 for i = 1 .. round(d * L) (at d = 0.5 of 4 layers: 1, 3,
the last layer kept); the DynaBERT paper's code keeps floor(i / d) for i = 0 .. round(d * L) - 1 (0, 2: the last
layer dropped). For each rule, on one trained teacher:
  1. the teacher cut to that depth, no training: dev F1;
  2. a short stage 2 (width 1.0, depths 1.0 and --depth, every pair every step): dev F1 at --depth per evaluation.
Writes --results (JSON). The project uses one rule everywhere, ner_ofa.supernet.kept_layers (the paper's, chosen
with this script); the script swaps the rule only inside its own main, for the duration of each arm -- which is
why it runs stage 2 in its own process, the one script that imports another (docs/design.md).

    python scripts/compare_kept_layers.py --teacher_dir tmp/msra_cpu/teacher/model_best
"""
import argparse
import contextlib
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

import run_msra_ner_ofa  # noqa: E402
from ner_ofa.data import load_splits  # noqa: E402
from ner_ofa.features import CharEncoder  # noqa: E402
from ner_ofa.scoring import evaluate  # noqa: E402
from ner_ofa import backends, cli, model_io, supernet  # noqa: E402


def paddle_rule(depth, num_layers):
    """Paddle's DynaBERT scripts: floor(i / depth) - 1 for i = 1 .. round(depth * L) (the last layer kept)."""
    count = max(1, int(round(depth * num_layers)))
    return [min(num_layers, int(math.floor(i / depth + 1e-3))) - 1 for i in range(1, count + 1)]


RULES = {"paddle": paddle_rule, "paper": supernet.kept_layers}  # the project uses the paper's (chosen here)


@contextlib.contextmanager
def rule_in_use(name):
    """ner_ofa.supernet.kept_layers is ``RULES[name]`` inside the block, the project's rule again after it."""
    project_rule = supernet.kept_layers
    supernet.kept_layers = RULES[name]
    try:
        yield
    finally:
        supernet.kept_layers = project_rule


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--teacher_dir", required=True, help="a stage-1 model_best/ directory (its dev split is used)")
    p.add_argument("--data_dir", default=os.path.join(SHARED, "msra_ner"), help="train.tsv/test.tsv the teacher used")
    p.add_argument("--work_dir", default=os.path.join(REPO, "tmp", "kept_layers"), help="stage-2 runs go here")
    p.add_argument("--results", default=os.path.join(REPO, "results", "kept_layers_rule.json"), help="results JSON")
    p.add_argument("--depth", type=float, default=0.5, help="the depth the two rules are compared at")
    p.add_argument("--max_steps", type=int, default=300, help="stage-2 steps per rule")
    p.add_argument("--save_steps", type=int, default=150, help="dev evaluation interval")
    p.add_argument("--learning_rate", type=float, default=5e-4, help="stage 2's peak learning rate")
    p.add_argument("--batch_size", type=int, default=32, help="windows per batch")
    p.add_argument("--max_seq_length", type=int, default=128, help="window length in tokens")
    p.add_argument("--seed", type=int, default=42, help="seed (the teacher's dev split must match)")
    return p.parse_args(argv)


def main(args):
    cli.setup_logging()
    teacher, tokenizer, info = model_io.load_model_dir(args.teacher_dir, ["teacher"])
    teacher.eval()
    num_layers = teacher.bert.config.num_hidden_layers
    data = load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=0.1, seed=args.seed),
                             label_list=info["labels"])
    encoder = CharEncoder(tokenizer)
    results = {"command": "python scripts/compare_kept_layers.py " + " ".join(sys.argv[1:]),
               "teacher_dir": os.path.relpath(os.path.abspath(args.teacher_dir), REPO),
               "teacher_dev_f1": model_io.read_json(os.path.join(args.teacher_dir, "metrics.json"))["dev"]["f1"],
               "depth": args.depth, "num_layers": num_layers, "rules": {}}
    for name in RULES:
        with rule_in_use(name):
            kept = supernet.kept_layers(args.depth, num_layers)
            cli.logger.info("rule %s: depth %s keeps layers %s of %d", name, args.depth, kept, num_layers)
            run = backends.dynamic_logits_fn(teacher)

            def cut(input_ids, run=run):
                with supernet.at_depth(teacher, args.depth):
                    return run(input_ids)

            zero_shot = evaluate(cut, data["dev"], encoder, info["labels"], args.max_seq_length,
                                       args.batch_size)["f1"]
            cli.logger.info("rule %s: the teacher cut to depth %s, untrained: dev F1 %.4f", name, args.depth, zero_shot)
            out = os.path.join(args.work_dir, name)
            summary = run_msra_ner_ofa.main(run_msra_ner_ofa.parse_args(
                ["--model_name_or_path", args.teacher_dir, "--output_dir", out, "--data_dir", args.data_dir,
                 "--device", "cpu", "--width_mult_list", "1.0", "--depth_mult_list", "1.0", str(args.depth),
                 "--learning_rate", str(args.learning_rate), "--max_steps", str(args.max_steps),
                 "--save_steps", str(args.save_steps), "--batch_size", str(args.batch_size),
                 "--max_seq_length", str(args.max_seq_length), "--importance_batches", "20",
                 "--logging_steps", "50", "--seed", str(args.seed)]))
        pair = f"1.0_{args.depth}"
        results["rules"][name] = {
            "kept_layers": kept, "zero_shot_dev_f1": zero_shot,
            "dev_f1_curve": [{"step": point["step"], "dev_f1": point[pair]} for point in summary["curve"]],
            "best_dev_f1": summary["pairs"][pair]["dev_f1"], "test_f1": summary["pairs"][pair]["test_f1"],
            "full_depth_best_dev_f1": summary["pairs"]["1.0_1.0"]["dev_f1"]}
        model_io.write_json(args.results, results)
    cli.logger.info("results: %s", args.results)
    return results


if __name__ == "__main__":
    cli.run_main(main, parse_args)
