"""Entity-level precision/recall/F1 with PaddleNLP's ChunkEvaluator, and scoring a model on labelled sentences."""
import numpy as np

from ner_ofa.labelling import predict_label_ids


def chunk_scores(gold, pred, label_list):
    """Precision/recall/F1 over entity chunks with PaddleNLP's ChunkEvaluator; gold/pred: label-id lists."""
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
    metric.update(*total)  # plain ints: ChunkEvaluator.accumulate does float(a / b)
    precision, recall, f1 = metric.accumulate()
    return {"precision": precision, "recall": recall, "f1": f1,
            "pred_chunks": total[0], "gold_chunks": total[1], "correct_chunks": total[2]}


def evaluate(logits_fn, examples, encoder, label_list, max_seq_length, batch_size):
    """Score every character of every sentence (long sentences in overlapping windows)."""
    label_to_id = {label: i for i, label in enumerate(label_list)}
    sequences = [encoder.encode(ex["chars"]) for ex in examples]
    pred = predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list)
    gold = [[label_to_id[label] for label in ex["labels"]] for ex in examples]
    scores = chunk_scores(gold, pred, label_list)
    scores["sentences"] = len(examples)
    scores["characters"] = int(sum(len(g) for g in gold))
    return scores
