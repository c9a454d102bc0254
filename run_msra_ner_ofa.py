"""Stage 2: turn the teacher into a PaddleSlim OFA width supernet and distil it from the teacher.

    python run_msra_ner_ofa.py --model_type bert --model_name_or_path ./tmp/msra_ner/model_best \\
        --task_name msra_ner --output_dir ./tmp/msra_ner_ofa/ --device gpu --width_mult_list 1.0 0.8333 0.6667 0.5

Steps: copy the teacher into a student; rank its attention heads and FFN neurons by importance on the dev
split and reorder them (DynaBERT), so a narrower width keeps the most important ones; convert the student
into an OFA supernet; every training step runs the teacher once and each width (widest first), with loss
``lambda_logit * soft-CE(student logits, teacher logits) + lambda_rep * MSE(hidden states)``; every
--save_steps each width is scored on dev and the best supernet weights *for that width* are kept in
OUTPUT_DIR/model_<width>/. At the end each width's best is scored on test; OUTPUT_DIR/summary.json lists both.
"""
import argparse
import contextlib
import os
import time

import numpy as np

import utils
from utils import UserError, logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_type", default="bert", choices=["bert"], help="model family of the teacher")
    parser.add_argument("--task_name", default="msra_ner", help="task name (informational; data from --data_dir "
                                                                "or PaddleNLP's msra_ner)")
    utils.add_model_data_args(parser, "the teacher: run_msra_ner.py's OUTPUT_DIR/model_best")
    utils.add_training_args(parser, lr=2e-5, epochs=6)
    parser.add_argument("--width_mult_list", type=float, nargs="+", default=[1.0, 0.8333, 0.6667, 0.5],
                        help="widths to train (fraction of heads and FFN neurons kept); must include 1.0")
    parser.add_argument("--lambda_logit", type=float, default=1.0, help="weight of the logit distillation loss")
    parser.add_argument("--lambda_rep", type=float, default=0.1, help="weight of the hidden-state distillation loss")
    parser.add_argument("--importance_batches", type=int, default=0,
                        help="dev batches used to rank heads/neurons (0: all of dev)")
    return parser.parse_args(argv)


def width_dir(output_dir, width):
    return os.path.join(output_dir, f"model_{width}")


def distill_loss(student_out, teacher_out, mask, args):
    """Soft cross-entropy on the characters' logits plus MSE on every hidden state (embeddings included)."""
    import paddle
    import paddle.nn.functional as F

    s_logits, t_logits = student_out.logits[mask], teacher_out.logits[mask]
    logit_loss = paddle.mean(paddle.sum(-F.softmax(t_logits, axis=-1) * F.log_softmax(s_logits, axis=-1), axis=-1))
    rep_losses = [F.mse_loss(s[mask], t[mask]) for s, t in zip(student_out.hidden_states, teacher_out.hidden_states)]
    rep_loss = paddle.add_n(rep_losses) / len(rep_losses)
    return args.lambda_logit * logit_loss + args.lambda_rep * rep_loss, float(logit_loss), float(rep_loss)


def main(args):
    import paddle

    started = time.time()
    widths = utils.validate_width_list(args.width_mult_list)
    rank, world_size, versions = utils.start_run(args)

    teacher, tokenizer, info = utils.load_model_dir(args.model_name_or_path, ["teacher"])
    student, _, _ = utils.load_model_dir(args.model_name_or_path, ["teacher"])
    label_list = info["labels"]
    config = teacher.bert.config
    if args.max_seq_length > config.max_position_embeddings:
        raise UserError(f"--max_seq_length {args.max_seq_length} exceeds the model's "
                        f"{config.max_position_embeddings} positions")
    data = utils.load_splits(args, label_list=label_list)
    utils.check_same_dev_split(utils.teacher_dev_split(args.model_name_or_path, info), data["dev_split"])
    if rank == 0:
        utils.check_output_dir_writable(args.output_dir)
        utils.check_free_space(args.output_dir, utils.count_parameters(teacher), copies=4 + len(widths))
    encoder = utils.CharEncoder(tokenizer)
    label_to_id = {label: i for i, label in enumerate(label_list)}
    logger.info("teacher: %s | %d parameters | widths %s", args.model_name_or_path, utils.count_parameters(teacher),
                " ".join(map(str, widths)))
    logger.info("data: train %d, dev %d (%s), test %d sentences | %s", len(data["train"]), len(data["dev"]),
                data["dev_source"], len(data["test"]), args.data_dir or "PaddleNLP msra_ner")
    logger.info("run: %s | world_size %d | %s", utils.describe_args(args), world_size,
                " ".join(f"{k} {v}" for k, v in versions.items()))

    # 1. importance on dev, reorder heads and neurons of the student (the function is unchanged)
    if args.resume and os.path.isfile(os.path.join(args.output_dir, utils.CHECKPOINT_DIR, "trainer_state.json")):
        logger.info("resuming: the checkpoint's weights already carry the importance order")
    else:
        dev_features = utils.train_features(data["dev"], encoder, label_to_id, args.max_seq_length)
        dev_batches = [utils.collate(dev_features[i:i + args.batch_size], encoder)
                       for i in range(0, len(dev_features), args.batch_size)]
        if args.importance_batches > 0:
            dev_batches = dev_batches[:args.importance_batches]
        head_importance, neuron_importance = utils.compute_head_neuron_importance(student, dev_batches)
        utils.reorder_heads_neurons(student, head_importance, neuron_importance)
        logger.info("reordered heads/neurons by importance on %d dev batches; layer 0 head order %s",
                    len(dev_batches), np.argsort(-head_importance[0], kind="stable").tolist())

    # 2. supernet
    ofa_model = utils.build_supernet(student, widths, data_parallel=world_size > 1)
    for width in widths:
        heads, neurons = utils.set_supernet_width(ofa_model, width)
        logger.info("width %s keeps %d/%d heads and %d/%d FFN neurons per layer", width, heads,
                    config.num_attention_heads, neurons, config.intermediate_size)
    teacher.eval()

    features = utils.train_features(data["train"], encoder, label_to_id, args.max_seq_length)
    sampler, num_steps = utils.training_sampler(args, features)
    optimizer = utils.make_optimizer(ofa_model.model.parameters(), ofa_model.model.named_parameters(), args, num_steps)

    utils.recover_run_outputs(args.output_dir, [os.path.basename(width_dir("", w)) for w in widths], rank, world_size)
    state = {"best": {str(w): {"f1": -1.0, "step": None} for w in widths}, "curve": []}

    def run_dev(step, epoch):
        ofa_model.model.eval()
        point = {"step": step, "epoch": round(epoch, 3)}
        for width in widths:
            utils.set_supernet_width(ofa_model, width)
            scores = utils.evaluate(utils.dynamic_logits_fn(ofa_model), data["dev"], encoder, label_list,
                                    args.max_seq_length, args.batch_size)
            point[str(width)] = scores["f1"]
            if scores["f1"] > state["best"][str(width)]["f1"]:
                state["best"][str(width)] = {"f1": scores["f1"], "step": step}
                sub_info = {"kind": "supernet", "labels": label_list, "max_seq_length": args.max_seq_length,
                            "width_mult_list": widths, "width_mult": width, "teacher": args.model_name_or_path}
                metrics = {"width_mult": width, "step": step, "epoch": round(epoch, 3), "dev": scores}
                utils.save_model_dir(width_dir(args.output_dir, width), config, utils.supernet_state_dict(ofa_model),
                                     tokenizer, sub_info, metrics, utils.args_to_dict(args))
        state["curve"].append(point)
        ofa_model.model.train()
        logger.info("dev step %d epoch %.2f | F1 %s", step, epoch, " ".join(
            f"w{w}={point[str(w)]:.4f}{'*' if state['best'][str(w)]['step'] == step else ''}" for w in widths))

    def step_fn(input_ids, labels):
        """Teacher once, then every width (widest first); gradients accumulate over the widths."""
        input_ids = paddle.to_tensor(input_ids)
        mask = paddle.to_tensor(labels != utils.IGNORE_INDEX)
        with paddle.no_grad():
            teacher_out = teacher(input_ids, output_hidden_states=True, return_dict=True)
        totals = {"loss": 0.0, "logit": 0.0, "rep": 0.0}
        for i, width in enumerate(widths):
            utils.set_supernet_width(ofa_model, width)
            # Data-parallel: accumulate locally, all-reduce once with the last width's backward
            local = world_size > 1 and i < len(widths) - 1
            with ofa_model.model.no_sync() if local else contextlib.nullcontext():
                student_out = ofa_model(input_ids, output_hidden_states=True, return_dict=True)
                loss, logit_loss, rep_loss = distill_loss(student_out, teacher_out, mask, args)
                loss.backward()
            for key, value in (("loss", float(loss)), ("logit", logit_loss), ("rep", rep_loss)):
                totals[key] += value / len(widths)
        return totals

    ofa_model.model.train()
    utils.train_loop(args, sampler=sampler, features=features, encoder=encoder, num_steps=num_steps,
                     optimizer=optimizer, step_fn=step_fn, run_dev=run_dev, model=ofa_model.model, state=state,
                     rank=rank, world_size=world_size)
    best = {w: state["best"][str(w)] for w in widths}
    curve = state["curve"]

    summary = {"teacher": args.model_name_or_path, "widths": {}, "curve": curve}
    if rank == 0:
        ofa_model.model.eval()
        for width in widths:
            path = width_dir(args.output_dir, width)
            state = paddle.load(os.path.join(path, utils.WEIGHTS_NAME))
            utils.load_supernet_weights(ofa_model, state)
            utils.set_supernet_width(ofa_model, width)
            test = utils.evaluate(utils.dynamic_logits_fn(ofa_model), data["test"], encoder, label_list,
                                  args.max_seq_length, args.batch_size)
            metrics = utils.read_json(os.path.join(path, "metrics.json"))
            metrics["test"] = test
            utils.write_json(os.path.join(path, "metrics.json"), metrics)
            summary["widths"][str(width)] = {"best_step": best[width]["step"], "dev_f1": best[width]["f1"],
                                             "test_precision": test["precision"], "test_recall": test["recall"],
                                             "test_f1": test["f1"], "model_dir": path}
            logger.info("width %s: best dev F1 %.4f (step %d) | test P %.4f R %.4f F1 %.4f | %s", width,
                        best[width]["f1"], best[width]["step"], test["precision"], test["recall"], test["f1"], path)
        summary["seconds"] = round(time.time() - started, 1)
        utils.write_json(os.path.join(args.output_dir, "summary.json"), summary)
        logger.info("summary: %s", os.path.join(args.output_dir, "summary.json"))
    utils.barrier(world_size)
    return summary


if __name__ == "__main__":
    utils.cli(main, parse_args)
