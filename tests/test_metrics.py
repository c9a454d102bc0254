"""ChunkEvaluator-based scores on hand-made BIO cases, and windowed prediction over long sentences."""
import numpy as np
import pytest

import utils

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID = {label: i for i, label in enumerate(LABELS)}


def ids(tags):
    return [ID[t] for t in tags.split()]


def test_perfect_and_empty():
    gold = [ids("B-PER I-PER O B-LOC")]
    assert utils.chunk_scores(gold, gold, LABELS)["f1"] == 1.0
    none = utils.chunk_scores([ids("O O")], [ids("O O")], LABELS)
    assert (none["precision"], none["recall"], none["f1"]) == (0.0, 0.0, 0.0)


def test_hand_made_cases():
    gold = [ids("B-PER I-PER O B-LOC I-LOC"), ids("B-LOC O B-PER")]
    pred = [ids("B-PER I-PER O B-LOC O"),      # LOC boundary wrong -> 1 correct of 2 predicted
            ids("B-PER O B-PER")]              # wrong type, then right
    s = utils.chunk_scores(gold, pred, LABELS)
    assert (s["gold_chunks"], s["pred_chunks"], s["correct_chunks"]) == (4, 4, 2)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)


def test_missing_and_extra_entities():
    gold = [ids("B-PER I-PER O O O")]
    pred = [ids("O O O B-LOC I-LOC")]
    s = utils.chunk_scores(gold, pred, LABELS)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    s = utils.chunk_scores([ids("B-PER O B-LOC")], [ids("B-PER O O")], LABELS)
    assert s["precision"] == 1.0 and s["recall"] == 0.5 and s["f1"] == pytest.approx(2 / 3)


class Enc:
    cls_id, sep_id, pad_id = 1, 2, 0


def edge_blind_model(gold_by_token, margin):
    """A fake model: token id t (>= 10) encodes its gold label; it answers O for the ``margin`` characters at
    each window edge (like a model that lacks context there)."""
    def run(input_ids):
        logits = np.zeros(input_ids.shape + (len(LABELS),), dtype="float32")
        for row, seq in enumerate(input_ids):
            n = int(((seq != 0) & (seq != 1) & (seq != 2)).sum())
            for pos in range(1, n + 1):
                label = gold_by_token[int(seq[pos])]
                if pos - 1 < margin or n - pos < margin:
                    label = 0
                logits[row, pos, label] = 1.0
        return logits
    return run


def test_windowed_prediction_keeps_entity_cut_by_a_window_boundary():
    # 30 characters, windows of 10 (max_seq_length 12) with stride 5: windows start 0, 5, 10, 15, 20.
    tags = ["O"] * 30
    tags[8:13] = ["B-PER", "I-PER", "I-PER", "I-PER", "I-PER"]   # crosses the end of window [0, 10)
    tags[19:21] = ["B-LOC", "I-LOC"]                              # crosses the end of window [10, 20)
    gold = [ID[t] for t in tags]
    tokens = list(range(10, 40))  # one distinct token per character
    model = edge_blind_model(dict(zip(tokens, gold)), margin=2)
    [pred] = utils.predict_label_ids(model, [tokens], Enc, max_seq_length=12, batch_size=2)
    assert pred.tolist() == gold
    s = utils.chunk_scores([gold], [pred.tolist()], LABELS)
    assert s["f1"] == 1.0 and s["gold_chunks"] == 2
    # Each window alone would have cut the PER entity: the first window sees only B-PER I-PER of it.
    assert sum(1 for t in tags[:10] if t != "O") == 2


def test_every_character_scored_even_beyond_max_seq_length():
    tokens = list(range(10, 40)) * 3  # 90 characters, windows of 14
    gold = [ID["B-PER"] if i % 9 == 0 else ID["O"] for i in range(90)]
    lookup = {}
    for t, g in zip(tokens, gold):
        lookup.setdefault(t, g)
    gold = [lookup[t] for t in tokens]
    [pred] = utils.predict_label_ids(edge_blind_model(lookup, 0), [tokens], Enc, max_seq_length=16, batch_size=4)
    assert len(pred) == 90 and pred.tolist() == gold


def test_spans_from_labels():
    spans = utils.spans_from_labels("B-PER I-PER O I-LOC I-LOC B-LOC B-PER I-LOC".split())
    assert spans == [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("PER", 6, 7), ("LOC", 7, 8)]
