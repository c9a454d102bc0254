"""Stage 2: turn the teacher into a PaddleSlim OFA supernet (width, and optionally depth) and distil it from it.

    python run_msra_ner_ofa.py --model_type bert --model_name_or_path ../tmp/msra_ner/model_best/ \\
        --task_name msra --output_dir ../tmp/msra_ner_ofa/ --device gpu --width_mult_list 1.0 0.8333333333333334 0.6666666666666666 0.5

Steps: copy the teacher into a student; rank its attention heads and FFN neurons by importance on the dev
split and reorder them (DynaBERT), so a narrower width keeps the most important ones; convert the student
into an OFA supernet; every training step runs the teacher once and each width (widest first) -- and with
--depth_mult_list each (width, depth) pair, depth keeping ner_ofa.supernet.kept_layers -- with loss
``lambda_logit * soft-CE(student logits, teacher logits) + lambda_rep * MSE(hidden states)``; every
--save_steps each width is scored on dev and the best supernet weights *for that width* are kept in
OUTPUT_DIR/model_<width>/ (dev: the --eval_sentences sample when one is set). At the end each width's best is
scored on test, unless --no_test; OUTPUT_DIR/summary.json lists the dev (and test) F1 of each.

DynaBERT's two phases: train a width-only supernet first (--depth_mult_list 1.0), then pass one of its
model_<width>/ directories as --model_name_or_path of a second run with depths: that run starts from the
width-adaptive weights (no reordering) and each (width, depth) pair distils from the width-adaptive model at
the same width and full depth.
"""
import argparse
import contextlib
import os
import time

import numpy as np

from ner_ofa.data import (check_same_data, check_same_dev_split, describe_splits, dev_sample, load_splits,
                          read_unlabeled_file)
from ner_ofa.features import CharEncoder, IGNORE_INDEX, collate, train_features, unlabeled_features
from ner_ofa import backends, cli, distributed, model_io, scoring, supernet, training
from ner_ofa.cli import logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--model_type", default="bert", choices=["bert"], help="model family of the teacher")
    parser.add_argument("--task_name", default="msra_ner", help="task name (informational; data from --data_dir "
                                                                "or PaddleNLP's msra_ner)")
    cli.add_model_data_args(parser, "the teacher: run_msra_ner.py's OUTPUT_DIR/model_best (the original commands': "
                                    "../tmp/msra_ner/model_best/); or, for DynaBERT's second phase, a width-only "
                                    "supernet: a model_<width>/ of a run with --depth_mult_list 1.0",
                            model_default=None)
    cli.add_training_args(parser, lr=2e-5, epochs=6)
    parser.add_argument("--width_mult_list", type=float, nargs="+", default=[1.0, 0.8333, 0.6667, 0.5],
                        help="widths to train (fraction of heads and FFN neurons kept); must include 1.0")
    parser.add_argument("--depth_mult_list", type=float, nargs="+", default=[1.0],
                        help="depths to train (fraction of encoder layers kept, ner_ofa.supernet.kept_layers); must "
                             "include 1.0; with more than 1.0, each (width, depth) pair is kept in model_<w>_<d>/")
    parser.add_argument("--pairs_per_step", type=int, default=0,
                        help="(width, depth) passes per training step: 0 = every pair; N >= 2 = the largest, the "
                             "smallest and N-2 others at random")
    cli.add_distillation_args(parser)
    parser.add_argument("--importance_batches", type=int, default=0,
                        help="dev batches used to rank heads/neurons (0: all of dev)")
    parser.add_argument("--no_test", action="store_true",
                        help="do not score the kept pairs on test here (compress scores each pair's exported static "
                             "graph on test instead)")
    return parser.parse_args(argv)


class Pairs:
    """The (width, depth) pairs stage 2 trains, how each is named, and which run in a training step.

    With ``--depth_mult_list 1.0`` (the default) the pairs are the widths at full depth, named by their width as
    before (model_<width>/); otherwise model_<width>_<depth>/. Order: every width at full depth (widest first),
    then the other depths (deepest first)."""

    def __init__(self, widths, depths, per_step):
        self.widths, self.depths, self.per_step = widths, depths, per_step
        self.all = [(w, 1.0) for w in widths] + [(w, d) for d in depths if d < 1.0 for w in widths]

    def name(self, width, depth):
        return str(width) if self.depths == [1.0] else f"{width}_{depth}"

    def dir(self, output_dir, width, depth):
        return os.path.join(output_dir, f"model_{self.name(width, depth)}")

    def this_step(self, seed, step):
        """All pairs; or, with --pairs_per_step N, the largest, the smallest and N-2 others drawn from a generator
        seeded by (seed, step) -- the same on every data-parallel rank, and again after --resume."""
        if not self.per_step or self.per_step >= len(self.all):
            return self.all
        largest, smallest = (max(self.widths), 1.0), (min(self.widths), min(self.depths))
        others = [p for p in self.all if p not in (largest, smallest)]
        drawn = np.random.RandomState((seed * 1000003 + step) % 2**32).permutation(len(others))[:max(0, self.per_step - 2)]
        return [largest] + [others[k] for k in sorted(drawn)] + [smallest]


def distill_loss(student_out, teacher_out, mask, args, kept):
    """Soft cross-entropy on the characters' logits plus MSE on the hidden states: the student's embeddings and
    each of its layers against the teacher's embeddings and the same layers (``kept``: the teacher layers the
    student's depth keeps); with ``--depth_rep_target last`` the student's last layer matches the teacher's last."""
    import paddle
    import paddle.nn.functional as F

    characters = paddle.nonzero(mask)  # gather_nd: the same rows as x[mask], without Paddle's reshape warning

    def take(x):
        return paddle.gather_nd(x, characters)

    s_logits, t_logits = take(student_out.logits), take(teacher_out.logits)
    logit_loss = paddle.mean(paddle.sum(-F.softmax(t_logits, axis=-1) * F.log_softmax(s_logits, axis=-1), axis=-1))
    targets = list(kept)
    if args.depth_rep_target == "last":
        targets[-1] = len(teacher_out.hidden_states) - 2
    teacher_states = [teacher_out.hidden_states[0]] + [teacher_out.hidden_states[k + 1] for k in targets]
    rep_losses = [F.mse_loss(take(s), take(t)) for s, t in zip(student_out.hidden_states, teacher_states)]
    rep_loss = paddle.add_n(rep_losses) / len(rep_losses)
    return args.lambda_logit * logit_loss + args.lambda_rep * rep_loss, float(logit_loss), float(rep_loss)


class Teacher:
    """What the students distil from: a fine-tuned BERT (every pair gets its outputs), or a width-adaptive OFA
    supernet (DynaBERT's second phase: the pair (w, d) gets the supernet's outputs at width w, full depth)."""

    def __init__(self, model, widths=None):
        self.model, self.widths = model, widths  # widths: None for a plain BERT

    def outputs(self, input_ids, step_widths):
        """{width: teacher outputs} for the widths of a training step, each computed once, without gradients."""
        import paddle

        with paddle.no_grad():
            if self.widths is None:
                out = self.model(input_ids, output_hidden_states=True, return_dict=True)
                return {width: out for width in step_widths}
            outs = {}
            for width in dict.fromkeys(step_widths):
                supernet.set_supernet_width(self.model, width)
                outs[width] = self.model(input_ids, output_hidden_states=True, return_dict=True)
            return outs


class Distillation:
    """One training step of the supernet: the teacher once per width of the step, then each (width, depth) pair
    of the step, each with :func:`distill_loss`; gradients accumulate over the pairs and the trainer steps once."""

    def __init__(self, teacher, ofa_model, pairs, args, world_size, trainer):
        self.teacher, self.ofa_model, self.pairs, self.args = teacher, ofa_model, pairs, args
        self.data_parallel = world_size > 1
        self.trainer = trainer  # whose current step seeds the draw of --pairs_per_step

    def forward_backward(self, input_ids, labels):
        import paddle

        input_ids = paddle.to_tensor(input_ids)
        mask = paddle.to_tensor(labels != IGNORE_INDEX)
        totals = {"loss": 0.0, "logit": 0.0, "rep": 0.0}
        step_pairs = self.pairs.this_step(self.args.seed, self.trainer.step)
        teacher_out = self.teacher.outputs(input_ids, [width for width, _ in step_pairs])
        for i, (width, depth) in enumerate(step_pairs):
            supernet.set_supernet_width(self.ofa_model, width)
            # data-parallel: accumulate locally, all-reduce once, with the last pair's backward
            skip_allreduce = self.data_parallel and i < len(step_pairs) - 1
            with self.ofa_model.model.no_sync() if skip_allreduce else contextlib.nullcontext():
                with supernet.at_depth(self.ofa_model, depth) as kept:
                    student_out = self.ofa_model(input_ids, output_hidden_states=True, return_dict=True)
                loss, logit_loss, rep_loss = distill_loss(student_out, teacher_out[width], mask, self.args, kept)
                loss.backward()
            for key, value in (("loss", float(loss)), ("logit", logit_loss), ("rep", rep_loss)):
                totals[key] += value / len(step_pairs)
        return totals


def logits_at(ofa_model, width, depth):
    """The supernet at (width, depth) as numpy in -> logits out."""
    run = backends.dynamic_logits_fn(ofa_model)

    def at(input_ids):
        supernet.set_supernet_width(ofa_model, width)
        with supernet.at_depth(ofa_model, depth):
            return run(input_ids)

    return at


class BestPerPair:
    """Scores every (width, depth) pair on dev and keeps, for each, the supernet weights that were best *for that
    pair* in OUTPUT_DIR/model_<name>/; ``progress`` (best F1 and step per pair, the learning curve) is what a
    checkpoint saves and --resume restores."""

    def __init__(self, args, ofa_model, pairs, config, tokenizer, encoder, data, dev, scalars, data_record, ranks):
        self.args, self.ofa_model, self.pairs, self.config = args, ofa_model, pairs, config
        self.tokenizer, self.encoder, self.data, self.scalars = tokenizer, encoder, data, scalars
        self.ranks = ranks  # every process scores its share of dev; rank 0 saves
        self.dev = dev  # dev_sample of data["dev"]
        self.data_record = data_record  # the teacher's dev split and data hashes, for a later phase's checks
        self.progress = {"best": {pairs.name(*p): {"f1": -1.0, "step": None} for p in pairs.all}, "curve": []}

    def evaluate_and_keep_best(self, step, epoch):
        self.ofa_model.model.eval()
        dev_point = {"step": step, "epoch": round(epoch, 3)}
        for width, depth in self.pairs.all:
            name = self.pairs.name(width, depth)
            scores = scoring.evaluate(logits_at(self.ofa_model, width, depth), self.dev, self.encoder,
                                      self.data["labels"], self.args.max_seq_length, self.args.batch_size,
                                      self.ranks, shapes="exact")
            dev_point[name] = scores["f1"]
            self.scalars.add(f"dev/f1_pair_{name}", scores["f1"], step)
            if scores["f1"] > self.progress["best"][name]["f1"]:
                self.progress["best"][name] = {"f1": scores["f1"], "step": step}
                if self.ranks.rank == 0:
                    self._save(width, depth, {"width_mult": width, "depth_mult": depth, "step": step,
                                              "epoch": round(epoch, 3), "dev": scores})
        self.progress["curve"].append(dev_point)
        self.ofa_model.model.train()
        logger.info("dev step %d epoch %.2f | F1 %s", step, epoch, " ".join(
            f"w{name}={dev_point[name]:.4f}{'*' if self.progress['best'][name]['step'] == step else ''}"
            for name in (self.pairs.name(*p) for p in self.pairs.all)))

    def _save(self, width, depth, metrics):
        """Replace model_<name>/. Whatever an export put inside it (the original layout: dynamic_model/,
        static_model.*) was cut from the weights being replaced: it is moved to OUTPUT_DIR/replaced_exports/,
        with a warning, rather than deleted or left beside weights it no longer matches."""
        model_info = {"kind": "supernet", "labels": self.data["labels"], "max_seq_length": self.args.max_seq_length,
                      "width_mult_list": self.pairs.widths, "width_mult": width,
                      "depth_mult_list": self.pairs.depths, "depth_mult": depth,
                      "kept_layers": supernet.recorded_kept_layers(self.pairs.depths, self.config.num_hidden_layers),
                      "teacher": self.args.model_name_or_path, **self.data_record}
        path = self.pairs.dir(self.args.output_dir, width, depth)
        aside = os.path.join(self.args.output_dir, "replaced_exports",
                             f"{os.path.basename(path)}.{time.strftime('%Y%m%d-%H%M%S')}")
        moved = model_io.save_model_dir(path, self.config, supernet.supernet_state_dict(self.ofa_model),
                                        self.tokenizer, model_info, metrics, cli.args_to_dict(self.args),
                                        set_aside=aside)
        if moved:
            logger.warning("%s held %s, exported from the weights it replaces now: moved to %s; export again from "
                           "the new %s", path, ", ".join(moved), aside, path)


def main(args):
    started = training.clock()
    widths = supernet.validate_multiplier_list(args.width_mult_list)
    depths = supernet.validate_multiplier_list(args.depth_mult_list, "--depth_mult_list", "depth")
    if args.pairs_per_step < 0 or args.pairs_per_step == 1:
        raise cli.UserError(f"--pairs_per_step must be 0 (every pair) or at least 2, got {args.pairs_per_step}")
    pairs = Pairs(widths, depths, args.pairs_per_step)
    rank, world_size, versions = cli.start_training_process(args)
    teacher, tokenizer, teacher_info = model_io.load_model_dir(args.model_name_or_path, ["teacher", "supernet"])
    student, _, _ = model_io.load_model_dir(args.model_name_or_path, ["teacher", "supernet"])
    width_adaptive = teacher_info["kind"] == "supernet"  # DynaBERT's second phase
    if width_adaptive:
        check_width_adaptive_teacher(teacher_info, widths, args.model_name_or_path)
    label_list = teacher_info["labels"]
    config = teacher.bert.config
    cli.check_max_seq_length(args.max_seq_length, config)
    data = load_splits(args, label_list=label_list)
    check_same_dev_split(teacher_info.get("dev_split"), data["dev_split"])
    check_same_data(teacher_info.get("data"), data)
    dev = dev_sample(data["dev"], args.eval_sentences, args.seed)  # what every evaluation scores
    dev_record = training.dev_sample_record(dev)
    training.check_resume_dev_sample(args, dev_record)
    if rank == 0:
        training.check_output_dir_writable(args.output_dir)
        training.check_free_space(args.output_dir, model_io.count_parameters(teacher), copies=4 + len(pairs.all))
    scalars = training.start_run_record(args, versions, rank)
    encoder = CharEncoder(tokenizer)
    logger.info("teacher: %s | %d parameters | widths %s | depths %s", args.model_name_or_path,
                model_io.count_parameters(teacher), " ".join(map(str, widths)), " ".join(map(str, depths)))
    logger.info("data: %s", describe_splits(data, args.data_dir, args.eval_sentences))
    logger.info("run: %s", cli.describe_run(args, world_size, versions))

    # 1. importance on dev; reorder the student's heads and neurons (the function is unchanged)
    if args.resume and os.path.isfile(os.path.join(args.output_dir, training.CHECKPOINT_DIR, "trainer_state.json")):
        logger.info("resuming: the checkpoint's weights already carry the importance order")
    elif width_adaptive:
        logger.info("DynaBERT phase 2: starting from the width-adaptive supernet (already in importance order); "
                    "each pair distils from it at the same width, full depth")
    else:
        reorder_by_importance(student, data["dev"], encoder, label_list, args, distributed.Ranks(rank, world_size))

    # 2. the supernet, and the run that distils it
    student.bert.embeddings.word_embeddings.weight.stop_gradient = args.freeze_word_embeddings
    ofa_model = supernet.build_supernet(student, widths, data_parallel=world_size > 1,
                                        unused_parameters=len(depths) > 1)
    for width in widths:
        heads, neurons = supernet.set_supernet_width(ofa_model, width)
        logger.info("width %s keeps %d/%d heads and %d/%d FFN neurons per layer", width, heads,
                    config.num_attention_heads, neurons, config.intermediate_size)
    for depth in depths:
        logger.info("depth %s keeps layers %s of %d", depth, supernet.kept_layers(depth, config.num_hidden_layers),
                    config.num_hidden_layers)
    if width_adaptive:
        teacher = Teacher(supernet.build_supernet(teacher, teacher_info["width_mult_list"]),
                          teacher_info["width_mult_list"])
    else:
        teacher = Teacher(teacher)
    teacher.model.eval()
    label_to_id = {label: i for i, label in enumerate(label_list)}
    features = train_features(data["train"], encoder, label_to_id, args.max_seq_length)
    unlabeled = None
    if args.unlabeled_file:
        sentences, dropped = read_unlabeled_file(args.unlabeled_file, data["dev"] + data["test"])
        extra = unlabeled_features(sentences, encoder, args.max_seq_length)
        unlabeled = {"file": args.unlabeled_file, "sentences": len(sentences), "windows": len(extra),
                     "dropped_dev_or_test_lines": dropped}
        logger.info("--unlabeled_file %s: %d sentences (%d windows) distilled beside %d labelled windows; %d lines "
                    "dropped (dev or test sentences)", args.unlabeled_file, len(sentences), len(extra), len(features),
                    dropped)
        features = features + extra
    trainer = training.Trainer(args, ofa_model.model, features, encoder, rank, world_size, scalars, dev_record)
    training.recover_run_outputs(args.output_dir, [os.path.basename(pairs.dir("", *p)) for p in pairs.all], rank,
                                 world_size)
    best = BestPerPair(args, ofa_model, pairs, config, tokenizer, encoder, data, dev, scalars,
                       {k: teacher_info[k] for k in ("dev_split", "data") if k in teacher_info}, trainer.ranks)
    distillation = Distillation(teacher, ofa_model, pairs, args, world_size, trainer)

    # 3. train, scoring every (width, depth) on dev and keeping each one's best every --save_steps
    ofa_model.model.train()
    trainer.run(distillation.forward_backward, best.evaluate_and_keep_best, best.progress,
                lambda: {pairs.name(*p): pairs.dir(args.output_dir, *p) for p in pairs.all})
    trained = training.clock()

    # 4. each pair's best, scored once on test (unless --no_test)
    summary = {"teacher": args.model_name_or_path, "pairs": {}, "curve": best.progress["curve"]}
    if unlabeled:
        summary["unlabeled"] = unlabeled
    for width, depth in pairs.all:
        name = pairs.name(width, depth)
        kept = best.progress["best"][name]
        summary["pairs"][name] = {"width": width, "depth": depth, "best_step": kept["step"], "dev_f1": kept["f1"],
                                  "model_dir": pairs.dir(args.output_dir, width, depth)}
        logger.info("width %s depth %s: best dev F1 %.4f (step %s) | %s", width, depth, kept["f1"], kept["step"],
                    summary["pairs"][name]["model_dir"])
        if not args.no_test:
            summary["pairs"][name].update(score_on_test(ofa_model, pairs, width, depth, data, encoder, args,
                                                        trainer.ranks))
    if rank == 0:
        summary["seconds"] = round(training.clock() - started, 1)
        summary["timing"] = training.timing_record(trainer, started, trained)
        model_io.write_json(os.path.join(args.output_dir, "summary.json"), summary)
        logger.info("summary: %s", os.path.join(args.output_dir, "summary.json"))
    training.end_run_record()
    distributed.barrier(world_size)
    return summary


def check_width_adaptive_teacher(info, widths, model_dir):
    """DynaBERT's second phase needs a width-only supernet that trained every width asked for."""
    if info.get("depth_mult_list", [1.0]) != [1.0]:
        raise cli.UserError(f"{model_dir} is a width x depth supernet (depths {info['depth_mult_list']}); DynaBERT's "
                            "second phase starts from a width-only one (stage 2 with --depth_mult_list 1.0)")
    missing = [w for w in widths if w not in info["width_mult_list"]]
    if missing:
        raise cli.UserError(f"--width_mult_list {' '.join(map(str, missing))} not trained in {model_dir} (widths "
                            f"{' '.join(map(str, info['width_mult_list']))}): its teacher would be untrained there")


def reorder_by_importance(student, dev, encoder, label_list, args, ranks):
    """DynaBERT: rank heads and FFN neurons by importance on dev batches, put the most important first. The
    processes share the batches and sum their importances, so each reorders its copy the same way."""
    label_to_id = {label: i for i, label in enumerate(label_list)}
    dev_features = train_features(dev, encoder, label_to_id, args.max_seq_length)
    if args.importance_batches > 0:
        dev_features = dev_features[:args.importance_batches * args.batch_size]
    # the same sentences, batched by length: dev order padded most batches to its longest sentence (2x the work);
    # the ranking shifts a little with the batching (each batch's mean loss weighs its sentences, |.| per batch)
    dev_features = sorted(dev_features, key=lambda feature: len(feature[0]))
    dev_batches = [collate(dev_features[i:i + args.batch_size], encoder)
                   for i in range(0, len(dev_features), args.batch_size)]
    from ner_ofa import cpu_training  # imports Paddle: not at module import (cli.run_main quiets its noise first)

    with cpu_training.on_cpu(cpu_training.fast_step):  # forward + backward, as in a training step
        head_importance, neuron_importance = supernet.compute_head_neuron_importance(student, ranks.shard(dev_batches))
    head_importance, neuron_importance = ranks.sum(head_importance), ranks.sum(neuron_importance)
    supernet.reorder_heads_neurons(student, head_importance, neuron_importance)
    logger.info("reordered heads/neurons by importance on %d dev batches; layer 0 head order %s",
                len(dev_batches), np.argsort(-head_importance[0], kind="stable").tolist())


def score_on_test(ofa_model, pairs, width, depth, data, encoder, args, ranks):
    """Load the weights kept for (width, depth), run the supernet there on test (every process its share), add
    the scores to that directory's metrics.json (rank 0); returns the test scores of the pair's summary row."""
    import paddle

    path = pairs.dir(args.output_dir, width, depth)
    supernet.load_supernet_weights(ofa_model, paddle.load(os.path.join(path, model_io.WEIGHTS_NAME)))
    ofa_model.model.eval()
    test = scoring.evaluate(logits_at(ofa_model, width, depth), data["test"], encoder, data["labels"],
                            args.max_seq_length, args.batch_size, ranks, shapes="exact")
    if ranks.rank == 0:
        metrics = model_io.read_json(os.path.join(path, "metrics.json"))
        model_io.write_json(os.path.join(path, "metrics.json"), dict(metrics, test=test))
    logger.info("width %s depth %s: test P %.4f R %.4f F1 %.4f", width, depth, test["precision"], test["recall"],
                test["f1"])
    return {"test_precision": test["precision"], "test_recall": test["recall"], "test_f1": test["f1"]}


if __name__ == "__main__":
    cli.run_main(main, parse_args)
