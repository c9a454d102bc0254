"""Stage 1: fine-tune a BERT token-classification teacher for Chinese NER and keep the best model on dev.

    python run_msra_ner.py --model_name_or_path bert-base-chinese --output_dir ./tmp/msra_ner/ --device gpu

Writes OUTPUT_DIR/model_best/ (weights, config, tokenizer, model_info.json with the labels, metrics.json with
the dev scores of the chosen step and, at the end, test scores; args.json) and OUTPUT_DIR/metrics.json
(the learning curve). Evaluation labels every character: long sentences are scored in overlapping windows.
"""
import argparse
import os
import time

import utils
from utils import UserError, logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    utils.add_model_data_args(parser, "hub name (default bert-base-chinese) or a local directory with config.json, "
                                      "vocab.txt and optionally weights (none: random init)")
    utils.add_training_args(parser, lr=2e-5, epochs=3)
    return parser.parse_args(argv)


def main(args):
    import paddle
    import paddle.nn.functional as F

    started = time.time()
    rank, world_size, versions = utils.start_run(args)
    data = utils.load_splits(args)
    label_list = data["labels"]
    label_to_id = {label: i for i, label in enumerate(label_list)}
    tokenizer = utils.load_tokenizer(args.model_name_or_path)
    encoder = utils.CharEncoder(tokenizer)
    model, origin = utils.load_teacher_start(args.model_name_or_path, len(label_list), label_list)
    max_positions = model.bert.config.max_position_embeddings
    if args.max_seq_length > max_positions:
        raise UserError(f"--max_seq_length {args.max_seq_length} exceeds the model's {max_positions} positions")
    if rank == 0:
        utils.check_output_dir_writable(args.output_dir)
        utils.check_free_space(args.output_dir, utils.count_parameters(model), copies=5)
    logger.info("teacher: %s | %d parameters | labels %s", origin, utils.count_parameters(model), " ".join(label_list))
    logger.info("data: train %d, dev %d (%s), test %d sentences | %s", len(data["train"]), len(data["dev"]),
                data["dev_source"], len(data["test"]), args.data_dir or "PaddleNLP msra_ner")
    logger.info("run: %s | world_size %d | %s", utils.describe_args(args), world_size,
                " ".join(f"{k} {v}" for k, v in versions.items()))

    features = utils.train_features(data["train"], encoder, label_to_id, args.max_seq_length)
    sampler, num_steps = utils.training_sampler(args, features)
    optimizer = utils.make_optimizer(model.parameters(), model.named_parameters(), args, num_steps)
    train_model = paddle.DataParallel(model) if world_size > 1 else model

    best_dir = os.path.join(args.output_dir, "model_best")
    utils.recover_run_outputs(args.output_dir, ["model_best"], rank, world_size)
    state = {"best": {"f1": -1.0, "step": None}, "curve": []}

    def run_dev(step, epoch):
        model.eval()
        scores = utils.evaluate(utils.dynamic_logits_fn(model), data["dev"], encoder, label_list,
                                args.max_seq_length, args.batch_size)
        model.train()
        state["curve"].append({"step": step, "epoch": round(epoch, 3), "dev": scores})
        improved = scores["f1"] > state["best"]["f1"]
        logger.info("dev step %d epoch %.2f | P %.4f R %.4f F1 %.4f%s", step, epoch, scores["precision"],
                    scores["recall"], scores["f1"], " | new best, saved" if improved else "")
        if improved:
            state["best"] = {"f1": scores["f1"], "step": step}
            metrics = {"step": step, "epoch": round(epoch, 3), "dev": scores}
            utils.save_model_dir(best_dir, model.bert.config, model.state_dict(), tokenizer,
                                 teacher_info(args, label_list, data["dev_split"]), metrics, utils.args_to_dict(args))

    def step_fn(input_ids, labels):
        logits = train_model(paddle.to_tensor(input_ids))
        loss = F.cross_entropy(logits, paddle.to_tensor(labels), ignore_index=utils.IGNORE_INDEX)
        loss.backward()
        return {"loss": float(loss)}

    model.train()
    utils.train_loop(args, sampler=sampler, features=features, encoder=encoder, num_steps=num_steps,
                     optimizer=optimizer, step_fn=step_fn, run_dev=run_dev, model=model, state=state, rank=rank,
                     world_size=world_size)
    best, curve = state["best"], state["curve"]

    result = {"best_step": best.get("step"), "best_dev_f1": best["f1"], "model_dir": best_dir, "curve": curve}
    if rank == 0:
        best_model, _, _ = utils.load_model_dir(best_dir, ["teacher"])
        best_model.eval()
        test = utils.evaluate(utils.dynamic_logits_fn(best_model), data["test"], encoder, label_list,
                              args.max_seq_length, args.batch_size)
        logger.info("test (best dev step %s) | P %.4f R %.4f F1 %.4f", best.get("step"), test["precision"],
                    test["recall"], test["f1"])
        metrics_path = os.path.join(best_dir, "metrics.json")
        metrics = utils.read_json(metrics_path)
        metrics["test"] = test
        utils.write_json(metrics_path, metrics)
        result.update(test=test, seconds=round(time.time() - started, 1))
        utils.write_json(os.path.join(args.output_dir, "metrics.json"), result)
        logger.info("best model: %s | metrics: %s", best_dir, os.path.join(args.output_dir, "metrics.json"))
    utils.barrier(world_size)
    return result


def teacher_info(args, label_list, dev_split):
    return {"kind": "teacher", "labels": label_list, "max_seq_length": args.max_seq_length, "dev_split": dev_split}


if __name__ == "__main__":
    utils.cli(main, parse_args)
