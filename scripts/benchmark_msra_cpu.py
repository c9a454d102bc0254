"""Real MSRA results on the CPU: teacher from scratch -> OFA over 4 widths -> export of every width -> test F1 and
static-model latency per width, written to results/msra_cpu.json and results/msra_cpu.png.

    python scripts/benchmark_msra_cpu.py            # full run (about 2 hours on 2 cores)
    python scripts/benchmark_msra_cpu.py --quick    # about 10 minutes, same chain, fewer steps

Pretrained weights are not available here, so the teacher is a small BERT trained from random initialisation
with the real bert-base-chinese vocabulary. Model selection uses a dev split carved from train; test is scored
once at the end on every character of every sentence.
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

import benchmark  # noqa: E402
import export_model_msra_ner_ofa as export_stage  # noqa: E402
import run_msra_ner  # noqa: E402
import run_msra_ner_ofa  # noqa: E402
import utils  # noqa: E402
from ner_ofa import cli, model_io, training  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--quick", action="store_true", help="~10 minute version (fewer steps)")
    p.add_argument("--data_stats", action="store_true",
                   help="only print how much of dev and test the training split covers (entities, characters), as JSON")
    p.add_argument("--data_dir", default=os.path.join(SHARED, "msra_ner"), help="MSRA train.tsv/test.tsv")
    p.add_argument("--bert_dir", default=os.path.join(SHARED, "bert-base-chinese"), help="vocab.txt + config.json")
    p.add_argument("--bench_file", default=os.path.join(SHARED, "bench", "msra_test_10451_chars.txt"),
                   help="latency workload, one text a line")
    p.add_argument("--work_dir", default=os.path.join(REPO, "tmp", "msra_cpu"), help="models go here (not committed)")
    p.add_argument("--results", default=os.path.join(REPO, "results", "msra_cpu.json"), help="results JSON")
    p.add_argument("--width_mult_list", type=float, nargs="+", default=[1.0, 0.8333, 0.6667, 0.5],
                   help="widths trained in stage 2, each exported and timed")
    p.add_argument("--vocab", choices=["train", "full"], default="train",
                   help="train: bert-base-chinese's vocab cut to the characters of train.tsv (smaller, faster "
                        "embedding); full: all 21,128 entries")
    p.add_argument("--num_layers", type=int, default=2, help="teacher's encoder layers")
    p.add_argument("--hidden_size", type=int, default=192, help="teacher's hidden size")
    p.add_argument("--num_heads", type=int, default=12, help="teacher's attention heads")
    p.add_argument("--intermediate_size", type=int, default=768, help="teacher's FFN neurons per layer")
    p.add_argument("--max_seq_length", type=int, default=128, help="window length in tokens, [CLS]/[SEP] included")
    p.add_argument("--batch_size", type=int, default=32, help="windows per batch (training, evaluation, latency)")
    p.add_argument("--teacher_lr", type=float, default=1e-3, help="teacher's peak learning rate (from scratch)")
    p.add_argument("--teacher_epochs", type=float, default=7, help="teacher's training epochs")
    p.add_argument("--teacher_steps", type=int, default=-1, help="> 0 overrides --teacher_epochs")
    p.add_argument("--ofa_lr", type=float, default=3e-4, help="stage 2's peak learning rate")
    p.add_argument("--ofa_epochs", type=float, default=2.0, help="stage 2's training epochs")
    p.add_argument("--ofa_steps", type=int, default=-1, help="> 0 overrides --ofa_epochs")
    cli.add_distillation_args(p)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="hidden and attention dropout of the from-scratch teacher (it is under-trained, not over-fitted)")
    p.add_argument("--teacher_save_steps", type=int, default=1000, help="teacher dev evaluation interval")
    p.add_argument("--ofa_save_steps", type=int, default=500, help="OFA dev evaluation interval (all widths)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for latency (training uses OMP_NUM_THREADS)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--seed", type=int, default=42, help="seed of both stages (data order, dev split, init)")
    args = p.parse_args(argv)
    if args.quick:
        args.teacher_steps, args.ofa_steps, args.teacher_save_steps, args.ofa_save_steps = 600, 100, 200, 50
        args.repeats = 2
    return args


def write_model_dir(args, path):
    """A config-only model directory: the teacher's sizes and, with --vocab train, the bert-base-chinese
    vocabulary cut to the entries the training characters map to (the specials first, original order)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(args.bert_dir, "vocab.txt"), encoding="utf-8") as handle:
        vocab = [line.rstrip("\n") for line in handle]
    if args.vocab == "train":
        encoder = utils.CharEncoder(model_io.load_tokenizer(args.bert_dir))
        used = {encoder.char_id(c) for ex in utils.read_ner_file(os.path.join(args.data_dir, "train.tsv"))
                for c in ex["chars"]}
        specials = {i for i, token in enumerate(vocab) if token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
        vocab = [token for i, token in enumerate(vocab) if i in specials | used]
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(token + "\n" for token in vocab))
    config = model_io.read_json(os.path.join(args.bert_dir, "config.json"))
    config.update(vocab_size=len(vocab), num_hidden_layers=args.num_layers, hidden_size=args.hidden_size,
                  num_attention_heads=args.num_heads, intermediate_size=args.intermediate_size,
                  hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    model_io.write_json(os.path.join(path, "config.json"), config)
    return config


def data_stats(args):
    """How much of dev and test the training split covers: entity mentions whose exact string is also an entity
    in train, and characters never seen in train. Explains part of the dev/test F1 gap."""
    data = utils.load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=0.1, seed=args.seed))

    def mentions(examples):
        return ["".join(ex["chars"][s:e]) for ex in examples for _, s, e in utils.spans_from_labels(ex["labels"])]

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
    for path in (args.data_dir, args.bert_dir, args.bench_file):
        if not os.path.exists(path):
            raise cli.UserError(f"{path} not found (this benchmark needs the shared MSRA data)")
    if args.data_stats:
        stats = data_stats(args)
        print(json.dumps(stats, indent=1))
        return stats
    started = time.time()
    work = args.work_dir
    init_dir = os.path.join(work, "init")
    config = write_model_dir(args, init_dir)
    common = ["--data_dir", args.data_dir, "--device", "cpu", "--max_seq_length", str(args.max_seq_length),
              "--batch_size", str(args.batch_size), "--logging_steps", "100", "--seed", str(args.seed)]
    stage_seconds = {}

    t0 = time.time()
    cli.setup_logging()
    cli.logger.info("1/4 teacher (its log lines carry the ETA)")
    teacher = run_msra_ner.main(run_msra_ner.parse_args(
        ["--model_name_or_path", init_dir, "--output_dir", os.path.join(work, "teacher"),
         "--learning_rate", str(args.teacher_lr), "--num_train_epochs", str(args.teacher_epochs),
         "--max_steps", str(args.teacher_steps), "--save_steps", str(args.teacher_save_steps), *common]))
    stage_seconds["teacher"] = round(time.time() - t0, 1)

    t0 = time.time()
    cli.logger.info("2/4 OFA over widths %s | elapsed %s", " ".join(map(str, args.width_mult_list)),
                    training.hours_minutes_seconds(time.time() - started))
    teacher_dir = os.path.join(work, "teacher", "model_best")
    summary = run_msra_ner_ofa.main(run_msra_ner_ofa.parse_args(
        ["--model_name_or_path", teacher_dir, "--output_dir", os.path.join(work, "ofa"),
         "--learning_rate", str(args.ofa_lr), "--num_train_epochs", str(args.ofa_epochs),
         "--max_steps", str(args.ofa_steps), "--lambda_logit", str(args.lambda_logit),
         "--lambda_rep", str(args.lambda_rep), "--save_steps", str(args.ofa_save_steps), "--importance_batches", "50",
         "--width_mult_list", *map(str, args.width_mult_list), *common]))
    stage_seconds["ofa"] = round(time.time() - t0, 1)

    t0 = time.time()
    exports = {}
    for k, width in enumerate(args.width_mult_list, 1):
        cli.logger.info("3/4 export width %s (%d/%d) | elapsed %s", width, k, len(args.width_mult_list),
                        training.hours_minutes_seconds(time.time() - started))
        out = os.path.join(work, "export", str(width))
        exports[width] = export_stage.main(export_stage.parse_args(
            ["--model_name_or_path", os.path.join(work, "ofa", f"model_{width}"), "--width_mult", str(width),
             "--max_seq_length", str(args.max_seq_length), "--sub_model_output_dir", os.path.join(out, "sub_model"),
             "--static_sub_model", os.path.join(out, "static", "model"), "--device", "cpu"]))
    teacher_static = benchmark.export_static(teacher_dir, os.path.join(work, "export", "teacher", "static", "model"))
    stage_seconds["export"] = round(time.time() - t0, 1)

    cli.logger.info("4/4 latency of %d static models | elapsed %s", 1 + len(args.width_mult_list),
                    training.hours_minutes_seconds(time.time() - started))
    texts = benchmark.read_workload(args.bench_file)
    models = [("teacher", None, teacher_static)] + [(f"width {w}", w, exports[w]["static_sub_model"])
                                                   for w in args.width_mult_list]
    latency = benchmark.time_static_models([m[2] for m in models], texts, args.threads, args.max_seq_length,
                                           args.batch_size, args.repeats)
    teacher_metrics = model_io.read_json(os.path.join(teacher_dir, "metrics.json"))
    teacher_f1 = teacher_metrics["test"]["f1"]
    rows = [{"name": "teacher", "width": None, "parameters": exports[1.0]["supernet_parameters"],
             "dev_f1": teacher_metrics["dev"]["f1"], "test_precision": teacher_metrics["test"]["precision"],
             "test_recall": teacher_metrics["test"]["recall"], "test_f1": teacher_f1, "f1_vs_teacher": 1.0,
             "latency_seconds": latency[0]}]
    for (name, width, _), seconds in zip(models[1:], latency[1:]):
        row = summary["widths"][str(width)]
        rows.append({"name": name, "width": width, "parameters": exports[width]["parameters"], "dev_f1": row["dev_f1"],
                     "best_step": row["best_step"], "test_precision": row["test_precision"],
                     "test_recall": row["test_recall"], "test_f1": row["test_f1"],
                     "f1_vs_teacher": row["test_f1"] / teacher_f1 if teacher_f1 else None, "latency_seconds": seconds})
    results = {
        "command": "python scripts/benchmark_msra_cpu.py" + (" --quick" if args.quick else ""),
        "hardware": benchmark.hardware(),
        "data": {"train_and_dev": os.path.relpath(os.path.abspath(args.data_dir), REPO), "dev": "0.1 of train, seed %d" % args.seed,
                 "test_sentences": teacher_metrics["test"]["sentences"],
                 "test_characters": teacher_metrics["test"]["characters"]},
        "teacher_config": {k: config[k] for k in model_io.BERT_CONFIG_FIELDS},
        "schedule": {k: getattr(args, k) for k in ("max_seq_length", "batch_size", "teacher_lr", "teacher_epochs",
                                                   "teacher_steps", "ofa_lr", "ofa_epochs", "ofa_steps",
                                                   "lambda_logit", "lambda_rep", "dropout", "teacher_save_steps",
                                                   "ofa_save_steps", "seed", "vocab")},
        "decoding": "best valid BIO sequence (utils.constrained_decode) over per-character log-probabilities",
        "code_commit": git_commit(),
        "teacher_steps": teacher_metrics["step"], "teacher_learning_curve": teacher["curve"],
        "ofa_learning_curve": summary["curve"], "stage_seconds": stage_seconds,
        "latency_workload": {"file": os.path.basename(args.bench_file), "characters": sum(len(t) for t in texts),
                             "lines": len(texts), "threads": args.threads, "batch_size": args.batch_size,
                             "max_seq_length": args.max_seq_length, "repeats": args.repeats,
                             "what": "median seconds, text -> entities incl. tokenization, Paddle Inference + oneDNN"},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    model_io.write_json(args.results, results)
    plot(results, os.path.splitext(args.results)[0] + ".png")
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


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r["width"] is not None]
    widths = [r["width"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(widths, [r["test_f1"] for r in rows], "o-", color="tab:blue", label="test F1 (sub-model)")
    ax1.axhline(results["rows"][0]["test_f1"], color="tab:blue", ls="--", lw=1, label="teacher test F1")
    ax1.set_xlabel("width (fraction of heads / FFN neurons kept)")
    ax1.set_ylabel("MSRA test F1", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(widths, [r["latency_seconds"] for r in rows], "s-", color="tab:red", label="latency")
    ax2.axhline(results["rows"][0]["latency_seconds"], color="tab:red", ls="--", lw=1)
    ax2.set_ylabel(f"seconds for {results['latency_workload']['characters']:,} chars (CPU)", color="tab:red")
    ax1.invert_xaxis()
    ax1.set_title("MSRA NER on a 2-core CPU: F1 and latency by width")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    cli.run_main(main, parse_args)
