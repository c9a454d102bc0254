"""Stage 1: fine-tune a BERT token-classification teacher for Chinese NER and keep the best model on dev.

    python run_msra_ner.py --model_name_or_path bert-base-chinese --output_dir ../tmp/msra_ner/ --device gpu

Writes OUTPUT_DIR/model_best/ (weights, config, tokenizer, model_info.json with the labels, the dev split and the
sentence counts and content hashes of train and dev, metrics.json with the dev scores of the chosen step and, at
the end, test scores; args.json) and OUTPUT_DIR/metrics.json (the learning curve). Evaluation labels every
character: long sentences are scored in overlapping windows.
"""
import os

from ner_ofa.data import data_fingerprint, describe_splits, dev_sample, load_splits
from ner_ofa.features import CharEncoder, IGNORE_INDEX, train_features
from ner_ofa import backends, cli, distributed, model_io, scoring, training
from ner_ofa.cli import logger


def parse_args(argv=None):
    return cli.teacher_parser(__doc__).parse_args(argv)


class BestTeacher:
    """Scores the teacher on dev and keeps the best one in OUTPUT_DIR/model_best/; ``progress`` (best F1 and step,
    the learning curve) is what a checkpoint saves and --resume restores."""

    def __init__(self, args, model, tokenizer, encoder, data, dev, scalars, ranks):
        self.args, self.model, self.tokenizer, self.encoder, self.data = args, model, tokenizer, encoder, data
        self.scalars, self.ranks = scalars, ranks  # every process scores its share of dev; rank 0 saves
        self.path = os.path.join(args.output_dir, "model_best")
        self.dev = dev  # dev_sample of data["dev"]
        self.progress = {"best": {"f1": -1.0, "step": None}, "curve": []}
        self.data_record = data_fingerprint(data)  # stage 2 checks it distils on the same sentences

    def evaluate_and_keep_best(self, step, epoch):
        self.model.eval()
        scores = scoring.evaluate(backends.dynamic_logits_fn(self.model), self.dev, self.encoder,
                                self.data["labels"], self.args.max_seq_length, self.args.batch_size, self.ranks,
                                shapes="exact")
        self.model.train()
        self.progress["curve"].append({"step": step, "epoch": round(epoch, 3), "dev": scores})
        for name in ("precision", "recall", "f1"):
            self.scalars.add(f"dev/{name}", scores[name], step)
        improved = scores["f1"] > self.progress["best"]["f1"]
        logger.info("dev step %d epoch %.2f | P %.4f R %.4f F1 %.4f%s", step, epoch, scores["precision"],
                    scores["recall"], scores["f1"], " | new best, saved" if improved else "")
        if improved:
            self.progress["best"] = {"f1": scores["f1"], "step": step}
        if improved and self.ranks.rank == 0:
            model_info = {"kind": "teacher", "labels": self.data["labels"], "max_seq_length": self.args.max_seq_length,
                          "dev_split": self.data["dev_split"], "data": self.data_record}
            metrics = {"step": step, "epoch": round(epoch, 3), "dev": scores}
            model_io.save_model_dir(self.path, self.model.bert.config, self.model.state_dict(), self.tokenizer,
                                    model_info, metrics, cli.args_to_dict(self.args))


def main(args):
    import paddle
    import paddle.nn.functional as F

    started = training.clock()
    rank, world_size, versions = cli.start_training_process(args)
    data = load_splits(args)
    label_list = data["labels"]
    tokenizer = model_io.load_tokenizer(args.model_name_or_path)
    encoder = CharEncoder(tokenizer)
    model, origin = model_io.load_teacher_start(args.model_name_or_path, len(label_list), label_list)
    cli.check_max_seq_length(args.max_seq_length, model.bert.config)
    dev = dev_sample(data["dev"], args.eval_sentences, args.seed)  # what every evaluation scores
    dev_record = training.dev_sample_record(dev)
    training.check_resume_dev_sample(args, dev_record)
    if rank == 0:
        training.check_output_dir_writable(args.output_dir)
        training.check_free_space(args.output_dir, model_io.count_parameters(model), copies=5)
    scalars = training.start_run_record(args, versions, rank)
    logger.info("teacher: %s | %d parameters | labels %s", origin, model_io.count_parameters(model),
                " ".join(label_list))
    logger.info("data: %s", describe_splits(data, args.data_dir, args.eval_sentences))
    logger.info("run: %s", cli.describe_run(args, world_size, versions))

    # 1. the training windows and the run that learns from them
    label_to_id = {label: i for i, label in enumerate(label_list)}
    features = train_features(data["train"], encoder, label_to_id, args.max_seq_length)
    trainer = training.Trainer(args, model, features, encoder, rank, world_size, scalars, dev_record)
    train_model = paddle.DataParallel(model) if world_size > 1 else model
    training.recover_run_outputs(args.output_dir, ["model_best"], rank, world_size)
    best = BestTeacher(args, model, tokenizer, encoder, data, dev, scalars, trainer.ranks)

    def forward_backward(input_ids, labels):
        logits = train_model(paddle.to_tensor(input_ids))
        loss = F.cross_entropy(logits, paddle.to_tensor(labels), ignore_index=IGNORE_INDEX)
        loss.backward()
        return {"loss": float(loss)}

    # 2. train, scoring dev and keeping the best every --save_steps
    model.train()
    trainer.run(forward_backward, best.evaluate_and_keep_best, best.progress, lambda: {None: best.path})
    trained = training.clock()

    # 3. the best model, scored once on test
    result = {"best_step": best.progress["best"]["step"], "best_dev_f1": best.progress["best"]["f1"],
              "model_dir": best.path, "curve": best.progress["curve"]}
    test = score_on_test(best.path, data, encoder, args, trainer.ranks)
    if rank == 0:
        result.update(test=test, seconds=round(training.clock() - started, 1),
                      timing=training.timing_record(trainer, started, trained))
        model_io.write_json(os.path.join(args.output_dir, "metrics.json"), result)
        logger.info("best model: %s | metrics: %s", best.path, os.path.join(args.output_dir, "metrics.json"))
    training.end_run_record()
    distributed.barrier(world_size)
    return result


def score_on_test(best_dir, data, encoder, args, ranks):
    """Test scores of the saved best model (every process scores its share), added to its metrics.json by rank 0."""
    model, _, _ = model_io.load_model_dir(best_dir, ["teacher"])
    model.eval()
    test = scoring.evaluate(backends.dynamic_logits_fn(model), data["test"], encoder, data["labels"],
                            args.max_seq_length, args.batch_size, ranks, shapes="exact")
    if ranks.rank != 0:
        return test
    metrics_path = os.path.join(best_dir, "metrics.json")
    metrics = model_io.read_json(metrics_path)
    logger.info("test (best dev step %s) | P %.4f R %.4f F1 %.4f", metrics["step"], test["precision"],
                test["recall"], test["f1"])
    model_io.write_json(metrics_path, dict(metrics, test=test))
    return test


if __name__ == "__main__":
    cli.run_main(main, parse_args)
