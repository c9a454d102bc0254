"""Does a dev sample pick the same model as all of dev? The selection evaluations of the training stages
(--eval_sentences N) score N dev sentences instead of all of them; a choice between two kept steps goes wrong when
the sample ranks them the other way round from the full dev split.

Every model given is run once over the whole dev split (the split the stages carve with --dev_ratio and --seed);
each sentence's predicted, gold and correct entity counts are kept, so any sample's F1 is a sum over its
sentences. For every two models the script reports their full-dev F1 gap and, over --draws random samples of each
size in --sentences (and the one fixed sample the stages use, ner_ofa.data.dev_sample), how often the sample ranks
them the other way and the full-dev F1 that choice would lose on average. JSON on stdout (and --results).

    python scripts/dev_sample_check.py --data_dir ../shared/data/msra_ner \\
        --model teacher=RUN/export/teacher/static --model w0.5=RUN/export/0.5_1.0/static \\
        --model w0.5_int8=RUN/export/0.5_1.0/int8 --sentences 500 1500 2250
"""
import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli, timing  # noqa: E402
from ner_ofa.data import dev_sample, load_splits  # noqa: E402
from ner_ofa.labelling import spans_from_labels  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--data_dir", required=True, help="the data the stages read (dev carved from its train)")
    p.add_argument("--dev_ratio", type=float, default=0.1, help="the stages' --dev_ratio")
    p.add_argument("--seed", type=int, default=42, help="the stages' --seed (dev split and fixed sample)")
    p.add_argument("--model", action="append", required=True,
                   help="NAME=DIR: an exported static graph or INT8 directory (predict.py's --model_dir); twice or more")
    p.add_argument("--sentences", type=cli.non_negative_int, nargs="+", default=[1500],
                   help="sample sizes to check (positive)")
    p.add_argument("--draws", type=int, default=2000, help="random samples per size")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each model")
    p.add_argument("--results", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if len(args.model) < 2 or any("=" not in m for m in args.model):
        p.error("give --model NAME=DIR at least twice")
    if 0 in args.sentences:
        p.error("--sentences: a sample size must be positive")
    return args


def sentence_counts(entities, examples):
    """[predicted, gold, correct] entities per sentence: (n, 3) ints."""
    rows = []
    for found, ex in zip(entities, examples):
        pred = {(e["type"], e["start"], e["end"]) for e in found}
        gold = set(spans_from_labels(ex["labels"]))
        rows.append((len(pred), len(gold), len(pred & gold)))
    return np.array(rows, dtype=np.int64)


def f1_of(counts):
    """F1 from summed [predicted, gold, correct] (the last axis)."""
    pred, gold, correct = counts[..., 0], counts[..., 1], counts[..., 2]
    precision = np.where(pred > 0, correct / np.maximum(pred, 1), 0.0)
    recall = np.where(gold > 0, correct / np.maximum(gold, 1), 0.0)
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)


def main(args):
    dev = load_splits(argparse.Namespace(data_dir=args.data_dir, dev_ratio=args.dev_ratio, seed=args.seed))["dev"]
    texts = ["".join(ex["chars"]) for ex in dev]
    counts, full = {}, {}
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = timing.load_static(path, args.threads, 128, 32)
        t0 = time.time()
        entities = model(texts)
        counts[name] = sentence_counts(entities, dev)
        full[name] = float(f1_of(counts[name].sum(0)))
        # the per-sentence sums are the project's scoring (ChunkEvaluator) of the same predictions
        official = timing.scores_of(lambda _: entities, dev)["f1"]
        if abs(official - full[name]) > 1e-9:
            raise SystemExit(f"{name}: per-sentence F1 {full[name]} differs from ChunkEvaluator's {official}")
        cli.logger.info("%s: dev F1 %.4f on %d sentences (%.0f s)", name, full[name], len(dev), time.time() - t0)
    rng = np.random.default_rng(args.seed)
    result = {"dev_sentences": len(dev), "dev_f1": {k: round(v, 5) for k, v in full.items()}, "pairs": []}
    samples = {n: [rng.choice(len(dev), n, replace=False) for _ in range(args.draws)]
               for n in args.sentences if n < len(dev)}
    fixed = {n: np.array(dev_sample(list(range(len(dev))), n, args.seed)) for n in samples}  # the stages' sample
    for a, b in itertools.combinations(counts, 2):
        gap = full[a] - full[b]
        row = {"models": [a, b], "full_dev_gap_points": round(100 * gap, 3), "samples": {}}
        for n, draws in samples.items():
            ids = np.stack(draws)
            sample_gap = f1_of(counts[a][ids].sum(1)) - f1_of(counts[b][ids].sum(1))
            wrong = float(np.mean(np.sign(sample_gap) != np.sign(gap))) if gap else 0.0
            fixed_gap = f1_of(counts[a][fixed[n]].sum(0)) - f1_of(counts[b][fixed[n]].sum(0))
            row["samples"][str(n)] = {"wrong_order_rate": round(wrong, 4),
                                      "expected_loss_points": round(100 * wrong * abs(gap), 4),
                                      "sample_gap_std_points": round(100 * float(np.std(sample_gap)), 3),
                                      "fixed_sample_gap_points": round(100 * float(fixed_gap), 3),
                                      "fixed_sample_order_right": bool(np.sign(fixed_gap) == np.sign(gap))}
        result["pairs"].append(row)
    result["hardware"] = timing.hardware()
    text = json.dumps(result, indent=1)
    print(text)
    if args.results:
        with open(args.results, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
