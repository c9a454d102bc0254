"""One training run: optimizer and schedule, length-bucketed (distributed) batches, checkpoints and --resume, the
loop with its timing and logging, and the checks and repairs of the output directory it owns."""
import math
import os
import shutil
import sys
import time

import numpy as np

from ner_ofa.cli import UserError, logger
from ner_ofa.distributed import Ranks, barrier, count_on_ranks
from ner_ofa.model_io import (
    fresh_save_dir,
    read_json,
    recover_interrupted_save,
    swap_into_place,
    write_json,
)
from ner_ofa.data import sentences_sha256
from ner_ofa.features import collate


def bucketed_batches(lengths, batch_size, rng, pool_batches=50, group=1):
    """Shuffled batches of similar-length items (less padding): shuffle, sort within pools, shuffle batches.
    ``group`` > 1 (the data-parallel processes) shuffles runs of ``group`` neighbouring batches instead, so the
    ``group`` batches of one step (batch k goes to process k % group) are alike in length: the processes wait for
    each other at the step's all-reduce, and two random batches would make every step as slow as its longer one.
    A last, shorter run stays at the end (where each process's share cuts it off)."""
    order = rng.permutation(len(lengths))
    batches = []
    pool = batch_size * pool_batches
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    runs = [batches[i:i + group] for i in range(0, len(batches), group)]
    last = runs.pop() if runs and len(runs[-1]) < group else None
    rng.shuffle(runs)
    return [b for run in runs + ([last] if last else []) for b in run]


def batches_per_epoch(windows, batch_size, nranks):
    """Each process's batches (steps) in one epoch: ``windows`` in batches of ``batch_size`` (per process),
    shared among ``nranks`` processes."""
    n = math.ceil(windows / batch_size)
    return n // nranks if nranks > 1 else n


def make_batch_sampler(lengths, batch_size, seed):
    """A length-bucketed ``paddle.io.DistributedBatchSampler``: each card gets its own share of batches."""
    import paddle

    class LengthBucketBatchSampler(paddle.io.DistributedBatchSampler):
        def __init__(self):
            super().__init__(dataset=lengths, batch_size=batch_size, shuffle=True)

        def _batches(self):
            all_batches = bucketed_batches(lengths, batch_size, np.random.RandomState(seed + self.epoch),
                                           group=max(1, self.nranks))
            per_rank = len(all_batches) // self.nranks if self.nranks > 1 else len(all_batches)
            return all_batches[self.local_rank::self.nranks][:per_rank]

        def __iter__(self):
            yield from self._batches()

        def __len__(self):
            return batches_per_epoch(len(lengths), batch_size, self.nranks)

    return LengthBucketBatchSampler()


def recover_run_outputs(output_dir, names, rank, world_size):
    """At the start of a training run, repair interrupted saves of the directories it owns
    (OUTPUT_DIR/<name> for each name, and OUTPUT_DIR/checkpoint). Rank 0 only; the others wait."""
    if rank == 0:
        for name in list(names) + [CHECKPOINT_DIR]:
            recover_interrupted_save(os.path.join(output_dir, name))
    barrier(world_size)


def check_free_space(path, parameters, copies):
    """Fail before training if the disk cannot hold ``copies`` float32 copies of the model (best models,
    checkpoint weights, optimizer moments) -- not an hour later, at the first save."""
    needed = parameters * 4 * copies
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(os.path.abspath(probe))
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise UserError(f"{path}: {free / 2**20:.0f} MiB free on disk, the run needs about {needed / 2**20:.0f} MiB")
    return free


def weights_checksum(model):
    """A short hash of all parameters (to check that data-parallel processes hold the same weights)."""
    import hashlib

    digest = hashlib.sha1()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(param.numpy()).tobytes())
    return digest.hexdigest()[:16]


def check_output_dir_writable(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UserError(f"{path}: cannot create the output directory ({error.strerror})") from None
    probe = os.path.join(path, f".write_test{os.getpid()}")
    try:
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise UserError(f"{path}: not writable ({error.strerror})") from None


def make_optimizer(model, args, num_training_steps):
    import paddle
    from paddlenlp.transformers import LinearDecayWithWarmup

    scheduler = LinearDecayWithWarmup(args.learning_rate, num_training_steps, args.warmup_proportion)
    decay = {p.name for n, p in model.named_parameters() if not any(nd in n for nd in ("bias", "norm"))}
    return paddle.optimizer.AdamW(learning_rate=scheduler, parameters=model.parameters(),
                                  weight_decay=args.weight_decay, apply_decay_param_fun=lambda n: n in decay)


def total_steps(args, batches_per_epoch):
    if args.max_steps > 0:
        return args.max_steps
    return max(1, int(math.ceil(batches_per_epoch * args.num_train_epochs)))


CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(output_dir, model, optimizer, trainer_state):
    """Weights, optimizer (with its LR scheduler) and the loop's state, swapped into OUTPUT_DIR/checkpoint/."""
    import paddle

    path = os.path.join(output_dir, CHECKPOINT_DIR)
    tmp = fresh_save_dir(path)
    paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
    paddle.save(_portable_optimizer_state(model, optimizer.state_dict(), to_portable=True),
                os.path.join(tmp, "optimizer.pdopt"))
    write_json(os.path.join(tmp, "trainer_state.json"), trainer_state)
    swap_into_place(tmp, path)


def _portable_optimizer_state(model, state, to_portable):
    """Optimizer state keys start with Paddle's generated parameter names (``embedding_27.w_0_moment1_0``),
    which differ between processes; store them by the parameter's position in ``model.parameters()``."""
    names = [p.name for p in model.parameters()]
    mapping = {name: f"param{i:05d}" for i, name in enumerate(names)}
    if not to_portable:
        mapping = {v: k for k, v in mapping.items()}
    ordered = sorted(mapping, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        prefix = next((name for name in ordered if key.startswith(name + "_") or key == name), None)
        if isinstance(value, dict) and key == "master_weights":
            value = {mapping.get(k, k): v for k, v in value.items()}
        out[mapping[prefix] + key[len(prefix):] if prefix else key] = value
    return out


def load_checkpoint(output_dir, model, optimizer):
    """Restore what :func:`save_checkpoint` wrote; returns the trainer state, or None if there is none."""
    import paddle

    path = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        return None
    model.set_state_dict(paddle.load(os.path.join(path, "model.pdparams")))
    optimizer.set_state_dict(_portable_optimizer_state(model, paddle.load(os.path.join(path, "optimizer.pdopt")),
                                                       to_portable=False))
    return read_json(os.path.join(path, "trainer_state.json"))


def dev_sample_record(sample):
    """What identifies the dev sentences a stage's evaluations score (its --eval_sentences sample)."""
    return {"sentences": len(sample), "sha256": sentences_sha256(sample)}


def check_resume_dev_sample(args, record):
    """Before anything is written: --resume must score the dev sentences the checkpoint's best F1 was scored on
    (``record``: :func:`dev_sample_record` of this run's sample)."""
    path = os.path.join(args.output_dir, CHECKPOINT_DIR, "trainer_state.json")
    if not getattr(args, "resume", False) or not os.path.isfile(path):
        return
    saved = read_json(path).get("dev_sample")
    if saved is None:
        logger.warning("--resume: the checkpoint in %s does not say which dev sentences its best F1 was scored on "
                       "(it predates --eval_sentences); this run scores %d", args.output_dir, record["sentences"])
    elif saved != record:
        raise UserError(f"--resume: the checkpoint in {args.output_dir} scored {saved['sentences']} dev sentences "
                        f"(sha256 {saved['sha256'][:12]}), this run would score {record['sentences']} (sha256 "
                        f"{record['sha256'][:12]}); give the --eval_sentences, --seed and dev data it started with")


class Trainer:
    """One training run of a stage.

    The stage says what is trained (``model``: its weights are checkpointed; the training windows), how a batch is
    learnt from (``forward_backward(input_ids, labels) -> {loss name: float}``, forward and backward only) and how
    dev is scored and the best kept (``evaluate_and_keep_best(step, epoch)``). The trainer owns the
    rest: the length-bucketed batch order, AdamW with its linear schedule, per-step dropout seeds, --resume, the
    step log, and a checkpoint after every evaluation. ``evaluate_and_keep_best`` runs on every process: they
share the scoring (``ranks``, a distributed.Ranks) and rank 0 alone saves. ``progress`` -- the stage's JSON-able record (best scores,
    learning curve) -- is checkpointed with the weights and restored in place by --resume. Dropout is seeded from
    (seed, step, rank), so a resumed run on the CPU repeats the uninterrupted one exactly."""

    def __init__(self, args, model, features, encoder, rank, world_size, scalars=None, dev_sample=None):
        self.args, self.model, self.features, self.encoder = args, model, features, encoder
        self.rank, self.world_size = rank, world_size
        self.ranks = Ranks(rank, world_size)
        self.scalars = scalars or NoScalars()
        self.dev_sample = dev_sample  # which dev sentences the evaluations score (dev_sample_record), checkpointed
        self.step = 0  # the step being trained (what per-step draws that must agree across ranks are seeded by)
        self.sampler = make_batch_sampler([len(ids) for ids, _ in features], args.batch_size, args.seed)
        self.num_steps = total_steps(args, len(self.sampler))
        self.optimizer = make_optimizer(model, args, self.num_steps)
        import paddle

        from ner_ofa import cpu_training

        self.on_cpu = paddle.get_device() == "cpu"  # the CPU fixes of ner_ofa.cpu_training; a GPU's path unchanged
        if self.on_cpu:
            cpu_training.keep_freed_memory()  # steps reuse freed blocks rather than fault pages in again
        # where this process's wall time went (the stage adds its own parts): what compress's budget planner and
        # docs/results.md's profile read
        self.timing = {"created": clock(), "first_step": None, "steps": 0, "step_seconds": 0.0,
                       "first_step_seconds": None, "evaluations": 0, "evaluation_seconds": 0.0}

    def run(self, forward_backward, evaluate_and_keep_best, progress, kept_dirs=None):
        """Train to ``num_steps``; returns the last step. ``kept_dirs()``: {the key of an entry of
        ``progress["best"]`` (or None for ``progress["best"]`` itself): the directory that keeps that best}; on
        --resume each entry is made to describe what its directory holds (:func:`best_from_saved`)."""
        args = self.args
        if len(self.sampler) == 0:
            raise UserError(f"rank {self.rank} of {self.world_size} gets no training batch: {len(self.features)} "
                            f"windows are too few for {self.world_size} processes; use fewer processes or more data")
        step = self._resume(progress, kept_dirs) if getattr(args, "resume", False) else 0
        log = StepLog(self.num_steps, len(self.sampler), step, self.scalars)
        timing = self.timing
        from ner_ofa import cpu_training

        for step, input_ids, labels in self._batches(step):
            self.step = step
            log.started()
            timing["first_step"] = timing["first_step"] or clock()
            with cpu_training.on_cpu(cpu_training.fast_step):  # a Linear's bias gradient as one GEMV, copying kernels
                losses = forward_backward(input_ids, labels)
            self.optimizer.step()
            self.optimizer._learning_rate.step()  # the LinearDecayWithWarmup scheduler
            self.optimizer.clear_grad()
            seconds = log.finished(losses, len(input_ids))
            timing["step_seconds"] += seconds
            timing["steps"] += 1
            if timing["first_step_seconds"] is None:  # the first step of a process warms up: kept apart
                timing["first_step_seconds"] = seconds
            step += 1
            epoch = step / len(self.sampler)
            late = self._past_stop_at()
            if late:
                logger.warning("step %d of %d: --stop_at reached, training stops here (after a dev evaluation)",
                               step, self.num_steps)
            if step % args.logging_steps == 0 or step == self.num_steps or late:
                log.write(step, self.optimizer.get_lr())
            if step % args.save_steps == 0 or step == self.num_steps or late:
                started = clock()
                evaluate_and_keep_best(step, epoch)  # every process scores its share of dev
                if self.rank == 0:
                    save_checkpoint(args.output_dir, self.model, self.optimizer,
                                    {"step": step, "state": progress, "dev_sample": self.dev_sample})
                barrier(self.world_size)
                timing["evaluations"] += 1
                timing["evaluation_seconds"] += clock() - started
            if late:
                break
        if self.world_size > 1:  # every process says what it holds; DataParallel keeps them identical
            print(f"rank {self.rank}: step {step} weights checksum {weights_checksum(self.model)}", file=sys.stderr,
                  flush=True)
        return step

    def _past_stop_at(self):
        """Whether --stop_at has passed, agreed by every process (so that all stop at the same step)."""
        stop_at = getattr(self.args, "stop_at", None)
        if stop_at is None:
            return False
        return count_on_ranks(time.time() >= stop_at, self.world_size) > 0

    def _resume(self, progress, kept_dirs=None):
        """Load OUTPUT_DIR/checkpoint (every process must see it); returns the step to continue from."""
        output_dir = self.args.output_dir
        found = os.path.isfile(os.path.join(output_dir, CHECKPOINT_DIR, "trainer_state.json"))
        check_checkpoint_on_every_rank(count_on_ranks(found, self.world_size), self.world_size, output_dir)
        restored = load_checkpoint(output_dir, self.model, self.optimizer)
        if restored is None:
            logger.warning("--resume: no checkpoint in %s; starting at step 0", output_dir)
            return 0
        progress.update(restored["state"])
        for key, path in (kept_dirs() if kept_dirs else {}).items():
            best_from_saved(progress["best"] if key is None else progress["best"][key], path, restored["step"])
        logger.info("resumed from %s at step %d", os.path.join(output_dir, CHECKPOINT_DIR), restored["step"])
        return restored["step"]

    def _batches(self, step):
        """(step, input_ids, labels) from ``step`` to the end, dropout seeded for each step; an epoch's batch order
        depends only on (seed, epoch), so a resumed run sees the same batches."""
        import paddle

        per_epoch = len(self.sampler)
        while step < self.num_steps:
            epoch_index, skip = divmod(step, per_epoch)
            self.sampler.set_epoch(epoch_index)
            for k, batch in enumerate(self.sampler):
                if k < skip:
                    continue
                paddle.seed(dropout_seed(self.args.seed, step, self.rank))
                yield (step, *collate([self.features[i] for i in batch], self.encoder))
                step += 1
                if step >= self.num_steps:
                    return


def best_from_saved(best, model_dir, checkpoint_step):
    """On --resume, make ``best`` ({"f1", "step"}, restored from the checkpoint) describe what ``model_dir`` holds,
    by its metrics.json. The two differ after a crash between a best-model save and the checkpoint save that
    follows it: the directory then holds a step after the checkpoint's, which the checkpoint does not know; the
    resumed run, its final metrics and its test scores must describe the model actually kept (and a later
    evaluation must beat *its* F1 to replace it). Returns whether ``best`` changed."""
    path = os.path.join(model_dir, "metrics.json")
    if not os.path.isfile(path):
        return False
    saved = read_json(path)
    if saved.get("step") is None or "dev" not in saved or saved["step"] == best.get("step"):
        return False
    logger.warning("%s holds step %d (dev F1 %.4f), the checkpoint of step %d records step %s as the best: %s; the "
                   "best so far is the one kept there", model_dir, saved["step"], saved["dev"]["f1"], checkpoint_step,
                   best.get("step"), "saved after the checkpoint (interrupted between the two saves)"
                   if saved["step"] > checkpoint_step else "not this checkpoint's best")
    best.update(f1=saved["dev"]["f1"], step=saved["step"])
    return True


def check_checkpoint_on_every_rank(found, world_size, output_dir):
    """--resume needs the checkpoint (written by rank 0) on every process's disk."""
    if 0 < found < world_size:
        raise UserError(f"--resume: {found} of {world_size} processes see {output_dir}/{CHECKPOINT_DIR}; rank 0 "
                        "writes it, so on several machines OUTPUT_DIR must be on a shared file system (or copy the "
                        "checkpoint directory to every machine first)")


RANK_SEED_OFFSET = 0x9E3779B1  # odd, ~0.62 * 2**32: ranks' seeds lie far apart for any realistic step count


def dropout_seed(seed, step, rank):
    """The seed set before each step: repeatable for --resume, different on each rank (so data-parallel
    processes draw different dropout masks, as independent batches should). ``paddle.seed`` keeps only the low
    32 bits: the rank's share must live there (it was ``rank << 32`` once, and every rank drew rank 0's masks).
    Rank 0 gets what a single process always got."""
    return (seed * 1000003 + step + rank * RANK_SEED_OFFSET) % (1 << 32)


def clock():
    return time.perf_counter()


class StepLog:
    """The step log line: mean of each loss since the last line, learning rate, seconds per step and windows
    (samples) per second counted over the steps only (evaluation and checkpoints between steps excluded), then the
    run's elapsed time and an ETA from the wall time per step so far (evaluations included). The same losses and
    learning rate go to the VisualDL scalars."""

    def __init__(self, num_steps, steps_per_epoch, first_step=0, scalars=None):
        self.num_steps, self.steps_per_epoch, self.first_step = num_steps, steps_per_epoch, first_step
        self.scalars = scalars or NoScalars()
        self.started_at = clock()
        self.losses, self.steps, self.samples, self.seconds, self.since = {}, 0, 0, 0.0, None

    def started(self):
        self.since = clock()

    def finished(self, losses, samples):
        """Record a step that started at :meth:`started`; returns its seconds."""
        seconds = clock() - self.since
        self.seconds += seconds
        self.steps += 1
        self.samples += samples
        for key, value in losses.items():
            self.losses.setdefault(key, []).append(value)
        return seconds

    def write(self, step, lr):
        means = {key: float(np.mean(v)) for key, v in self.losses.items()}
        elapsed = clock() - self.started_at
        remaining = elapsed / max(1, step - self.first_step) * (self.num_steps - step)
        logger.info("step %d/%d epoch %.2f | %s | lr %.2e | %.3f s/step, %.1f samples/s | elapsed %s, ETA %s", step,
                    self.num_steps, step / self.steps_per_epoch, " ".join(f"{k} {v:.4f}" for k, v in means.items()),
                    lr, self.seconds / max(1, self.steps), self.samples / max(1e-9, self.seconds),
                    hours_minutes_seconds(elapsed), hours_minutes_seconds(remaining))
        for key, value in means.items():
            self.scalars.add(f"train/{key}", value, step)
        self.scalars.add("train/lr", lr, step)
        self.losses, self.steps, self.samples, self.seconds = {}, 0, 0, 0.0


def timing_record(trainer, started, trained):
    """A stage's wall time on this process, by part: from ``started`` (its start) to the first step (imports,
    data, model, importance), training steps, dev evaluations with their checkpoints, and from ``trained`` (the
    end of the loop) to now (test scoring, the summary). Seconds, rounded to 0.1."""
    t = trainer.timing
    now = clock()
    first = t["first_step"] or trained
    return {"wall_seconds": round(now - started, 1), "startup_seconds": round(first - started, 1),
            "steps": t["steps"], "step_seconds": round(t["step_seconds"], 2),
            "first_step_seconds": round(t["first_step_seconds"] or 0.0, 2), "evaluations": t["evaluations"],
            "evaluation_seconds": round(t["evaluation_seconds"], 1), "after_training_seconds": round(now - trained, 1)}


def hours_minutes_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class NoScalars:
    """Where scalars go on ranks other than 0, and in tests."""

    def add(self, tag, value, step):
        pass


class Scalars:
    """VisualDL scalars in OUTPUT_DIR/visualdl/: ``visualdl --logdir OUTPUT_DIR/visualdl`` shows the curves."""

    def __init__(self, logdir):
        from visualdl import LogWriter

        self.writer = LogWriter(logdir=logdir)

    def add(self, tag, value, step):
        self.writer.add_scalar(tag=tag, value=float(value), step=int(step))
        self.writer.flush()

    def close(self):
        self.writer.close()


def start_run_record(args, versions, rank):
    """At the start of a run, once its inputs were checked: the full log also goes to OUTPUT_DIR/train.log
    (appended), OUTPUT_DIR/args.json gets the flags, the command and the package versions, and the scalars go to
    OUTPUT_DIR/visualdl/. Rank 0 only; returns the scalars writer (a no-op on other ranks)."""
    import logging

    end_run_record()
    if rank != 0:
        return NoScalars()
    handler = logging.FileHandler(os.path.join(args.output_dir, "train.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logging.getLogger().addHandler(handler)
    _RUN_RECORD.append(handler)
    write_json(os.path.join(args.output_dir, "args.json"),
               {"args": {k: v for k, v in sorted(vars(args).items())}, "command": sys.argv, "versions": versions,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    scalars = Scalars(os.path.join(args.output_dir, "visualdl"))
    _RUN_RECORD.append(scalars)
    return scalars


_RUN_RECORD = []  # what start_run_record opened: the train.log handler and the VisualDL writer


def end_run_record():
    """Close what :func:`start_run_record` opened (so later lines of the process do not land in this run's
    train.log); called at the end of a stage, and at the start of the next one in case a run stopped early."""
    import logging

    while _RUN_RECORD:
        item = _RUN_RECORD.pop()
        if isinstance(item, logging.Handler):
            logging.getLogger().removeHandler(item)
        item.close()
