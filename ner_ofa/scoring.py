"""Entity-level precision/recall/F1 with PaddleNLP's ChunkEvaluator, and scoring a model on labelled sentences."""
import numpy as np

from ner_ofa.labelling import predict_label_ids


def chunk_scores(gold, pred, label_list):
    """Precision/recall/F1 over entity chunks with PaddleNLP's ChunkEvaluator; gold/pred: label-id lists."""
    return scores_from_counts(chunk_counts(gold, pred, label_list), label_list)


def chunk_counts(gold, pred, label_list):
    """[predicted, gold, correct] entity chunks (ChunkEvaluator's counts: they add up over any split of the
    sentences)."""
    import paddle
    from paddlenlp.metrics import ChunkEvaluator

    metric = ChunkEvaluator(label_list=label_list)
    total = [0, 0, 0]
    for start in range(0, len(gold), 256):
        g, p = gold[start:start + 256], pred[start:start + 256]
        width = max(1, max(len(x) for x in g))
        gold_arr = np.zeros((len(g), width), dtype="int64")
        pred_arr = np.zeros((len(g), width), dtype="int64")
        for row, (gi, pi) in enumerate(zip(g, p)):
            gold_arr[row, :len(gi)] = gi
            pred_arr[row, :len(pi)] = pi
        lengths = [len(x) for x in g]
        counts = metric.compute(lengths, paddle.to_tensor(pred_arr), paddle.to_tensor(gold_arr))
        for k in range(3):
            total[k] += int(counts[k].numpy().sum())
    return total


def scores_from_counts(counts, label_list):
    """ChunkEvaluator's precision/recall/F1 from [predicted, gold, correct] chunk counts."""
    from paddlenlp.metrics import ChunkEvaluator

    metric = ChunkEvaluator(label_list=label_list)
    metric.update(*(int(c) for c in counts))  # plain ints: ChunkEvaluator.accumulate does float(a / b)
    precision, recall, f1 = metric.accumulate()
    return {"precision": precision, "recall": recall, "f1": f1,
            "pred_chunks": int(counts[0]), "gold_chunks": int(counts[1]), "correct_chunks": int(counts[2])}


def evaluate(logits_fn, examples, encoder, label_list, max_seq_length, batch_size, ranks=None, shapes="buckets"):
    """Score every character of every sentence (long sentences in overlapping windows). ``ranks`` (a
    ``distributed.Ranks``, on every data-parallel process at once): each process labels its share of the
    sentences and the chunk counts are summed, so every process gets the scores one process would. ``shapes``:
    "exact" for a model without per-shape kernels (dygraph, ONNX Runtime), see ``labelling.Labelling``."""
    if ranks is not None:
        examples = ranks.shard(examples)
    label_to_id = {label: i for i, label in enumerate(label_list)}
    sequences = [encoder.encode(ex["chars"]) for ex in examples]
    pred = predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list, shapes)
    gold = [[label_to_id[label] for label in ex["labels"]] for ex in examples]
    counts = chunk_counts(gold, pred, label_list) + [len(examples), sum(len(g) for g in gold)]
    if ranks is not None:
        counts = ranks.sum(counts)
    scores = scores_from_counts(counts[:3], label_list)
    scores["sentences"], scores["characters"] = int(counts[3]), int(counts[4])
    return scores
