"""ChunkEvaluator-based scores on hand-made BIO cases, and windowed prediction over long sentences."""
import numpy as np
import pytest

from ner_ofa.labelling import constrained_decode, decode_chunks, log_softmax, plan_batches, predict_label_ids, \
    spans_from_labels
from ner_ofa.scoring import chunk_scores, evaluate

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ID = {label: i for i, label in enumerate(LABELS)}


def ids(tags):
    return [ID[t] for t in tags.split()]


def test_perfect_and_empty():
    gold = [ids("B-PER I-PER O B-LOC")]
    assert chunk_scores(gold, gold, LABELS)["f1"] == 1.0
    none = chunk_scores([ids("O O")], [ids("O O")], LABELS)
    assert (none["precision"], none["recall"], none["f1"]) == (0.0, 0.0, 0.0)


def test_hand_made_cases():
    gold = [ids("B-PER I-PER O B-LOC I-LOC"), ids("B-LOC O B-PER")]
    pred = [ids("B-PER I-PER O B-LOC O"),      # LOC boundary wrong -> 1 correct of 2 predicted
            ids("B-PER O B-PER")]              # wrong type, then right
    s = chunk_scores(gold, pred, LABELS)
    assert (s["gold_chunks"], s["pred_chunks"], s["correct_chunks"]) == (4, 4, 2)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.5)


def test_missing_and_extra_entities():
    gold = [ids("B-PER I-PER O O O")]
    pred = [ids("O O O B-LOC I-LOC")]
    s = chunk_scores(gold, pred, LABELS)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    s = chunk_scores([ids("B-PER O B-LOC")], [ids("B-PER O O")], LABELS)
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
    [pred] = predict_label_ids(model, [tokens], Enc, max_seq_length=12, batch_size=2)
    assert pred.tolist() == gold
    s = chunk_scores([gold], [pred.tolist()], LABELS)
    assert s["f1"] == 1.0 and s["gold_chunks"] == 2
    # Non-overlapping windows (each character from the one window it lies in) cut both entities: the same model
    # then misses them, so the overlap is what kept them.
    cut = np.concatenate([predict_label_ids(model, [tokens[s:s + 10]], Enc, max_seq_length=12, batch_size=2)[0]
                          for s in range(0, 30, 10)])
    assert chunk_scores([gold], [cut.tolist()], LABELS)["correct_chunks"] == 0


def test_every_character_scored_even_beyond_max_seq_length():
    tokens = list(range(10, 40)) * 3  # 90 characters, windows of 14
    gold = [ID["B-PER"] if i % 9 == 0 else ID["O"] for i in range(90)]
    lookup = {}
    for t, g in zip(tokens, gold):
        lookup.setdefault(t, g)
    gold = [lookup[t] for t in tokens]
    [pred] = predict_label_ids(edge_blind_model(lookup, 0), [tokens], Enc, max_seq_length=16, batch_size=4)
    assert len(pred) == 90 and pred.tolist() == gold


def test_spans_from_labels():
    spans = spans_from_labels("B-PER I-PER O I-LOC I-LOC B-LOC B-PER I-LOC".split())
    assert spans == [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("PER", 6, 7), ("LOC", 7, 8)]


def _valid_bio(tags):
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


def test_constrained_decode_repairs_fragmented_argmax():
    def scores(rows):  # one row of probabilities per character
        return np.log(np.asarray(rows, dtype=np.float64))
    #            O     B-PER I-PER B-LOC I-LOC
    s = scores([[0.10, 0.40, 0.45, 0.03, 0.02],    # argmax I-PER at the start: not valid BIO
                [0.05, 0.05, 0.80, 0.05, 0.05],
                [0.30, 0.05, 0.05, 0.05, 0.55],    # argmax I-LOC right after a PER: type switch
                [0.90, 0.025, 0.025, 0.025, 0.025]])
    assert [LABELS[i] for i in s.argmax(-1)] == ["I-PER", "I-PER", "I-LOC", "O"]
    [path] = constrained_decode([s], LABELS)
    assert [LABELS[i] for i in path] == ["B-PER", "I-PER", "O", "O"]
    # Two argmax fragments, two chunks; decoded: one PER, which is the gold entity here.
    gold = ids("B-PER I-PER O O")
    assert chunk_scores([gold], [s.argmax(-1).tolist()], LABELS)["pred_chunks"] == 2
    assert chunk_scores([gold], [path.tolist()], LABELS)["f1"] == 1.0


def test_constrained_decode_is_the_best_valid_path():
    import itertools

    rng = np.random.RandomState(0)
    lengths = [0, 1, 2, 3, 4, 5, 1, 4]
    score_list = [log_softmax(rng.randn(n, len(LABELS))) for n in lengths]
    paths = constrained_decode(score_list, LABELS, max_cells=12)  # chunks mix lengths
    for s, path in zip(score_list, paths):
        assert len(path) == len(s)
        best, best_score = None, -np.inf
        for cand in itertools.product(range(len(LABELS)), repeat=len(s)):
            total = sum(s[t, c] for t, c in enumerate(cand))
            if _valid_bio([LABELS[c] for c in cand]) and total > best_score:
                best, best_score = list(cand), total
        assert path.tolist() == (best or [])
        # a valid argmax is left as it is
        if _valid_bio([LABELS[c] for c in s.argmax(-1)]):
            assert path.tolist() == s.argmax(-1).tolist()


def test_evaluation_decodes_valid_bio(monkeypatch):
    # evaluate() must score the constrained path, not the raw argmax
    examples = [{"chars": list("abcd"), "labels": "B-PER I-PER O O".split()}]

    class E:
        cls_id, sep_id, pad_id = 1, 2, 0

        @staticmethod
        def encode(chars):
            return [10 + i for i in range(len(chars))]

    def logits_fn(input_ids):
        out = np.full(input_ids.shape + (len(LABELS),), -5.0, dtype=np.float32)
        out[:, 1, ID["B-PER"]] = 2.0
        out[:, 2, ID["I-LOC"]], out[:, 2, ID["I-PER"]] = 2.0, 1.9   # argmax switches type inside the entity
        out[:, 3:, ID["O"]] = 2.0
        return out

    [argmax] = predict_label_ids(logits_fn, [E.encode("abcd")], E, 16, 4)
    assert chunk_scores([ids("B-PER I-PER O O")], [argmax.tolist()], LABELS)["f1"] == 0.0
    s = evaluate(logits_fn, examples, E, LABELS, max_seq_length=16, batch_size=4)
    assert s["f1"] == 1.0 and s["pred_chunks"] == 1


def test_decode_memory_is_bounded_by_characters_not_sequences():
    """256 texts of 100,000 characters padded into one float64 block would take ~3 GB at 7 labels; chunks are
    bounded by padded characters, and decoding in chunks gives the same paths."""
    lengths = [100_000] * 256 + [3, 50, 0, 7] * 100
    cells = 1 << 18
    chunks = decode_chunks(lengths, cells)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        padded = len(chunk) * max(lengths[i] for i in chunk)
        assert padded <= cells or len(chunk) == 1, (len(chunk), padded)
    rng = np.random.RandomState(1)
    score_list = [log_softmax(rng.randn(n, len(LABELS))) for n in [5, 0, 40, 17, 1, 33, 8]]
    one_block = constrained_decode(score_list, LABELS, max_cells=10**9)
    small = constrained_decode(score_list, LABELS, max_cells=40)
    assert [p.tolist() for p in small] == [p.tolist() for p in one_block]


@pytest.mark.parametrize("shapes", ["buckets", "exact"])
def test_model_calls_use_few_shapes_and_padding_changes_no_label(shapes):
    """With ``shapes="buckets"`` every model call gets one of a few (rows, length) shapes -- Paddle Inference's
    per-shape oneDNN caches then stay bounded in a long-lived server; with "exact" (ONNX Runtime) a call is as long
    as its longest window and has no padded rows. Either way the padding changes no label: a real (tiny, random)
    BERT, whose every output depends on every unmasked input, labels each text as when each of its windows runs
    alone, unpadded. (A fake model that ignored padding made this unable to fail.)"""
    from conftest import tiny_model

    from ner_ofa import backends

    class E:
        cls_id, sep_id, pad_id = 1, 2, 0  # the tiny BERT's pad_token_id is 0: what its attention masks

    bert = tiny_model(num_labels=len(LABELS), vocab_size=60)
    rng = np.random.RandomState(0)
    for param in bert.parameters():  # weights far from the 0.02-wide init: an unmasked [PAD] moves logits by ~1
        if len(param.shape) >= 2:
            param.set_value(rng.normal(0, 0.4, param.shape).astype("float32"))
    model = backends.dynamic_logits_fn(bert)
    calls, inputs = [], []

    def logits_fn(input_ids):
        calls.append(input_ids.shape)
        inputs.append(input_ids)
        return model(input_ids)

    def unpadded(input_ids):  # each row alone, cut after its [SEP]: no padding at all
        out = np.zeros(input_ids.shape + (len(LABELS),), dtype=np.float32)
        for row, ids in enumerate(input_ids):
            n = int(np.nonzero(ids == E.sep_id)[0][0]) + 1
            out[row, :n] = model(ids[None, :n])[0]
        return out

    rng = np.random.RandomState(3)
    sequences = [rng.randint(3, 60, size=n).tolist() for n in rng.randint(1, 150, size=40)]
    labels = predict_label_ids(logits_fn, sequences, E, max_seq_length=64, batch_size=16, label_list=LABELS,
                               shapes=shapes)
    if shapes == "buckets":
        assert {rows for rows, _ in calls} <= {1, 2, 4, 8, 16}
        assert all(length % 8 == 0 or length == 64 for _, length in calls)
        assert len(set(calls)) < len(calls)
    else:
        assert all(not (ids == E.pad_id).all(-1).any() for ids in inputs)  # no row all padding
        assert all((ids[:, -1] != E.pad_id).any() for ids in inputs)  # as long as the longest window
    for ids, got in zip(sequences, labels):
        [alone] = predict_label_ids(unpadded, [ids], E, max_seq_length=64, batch_size=1, label_list=LABELS)
        assert got.tolist() == alone.tolist()


def _batch_costs(lengths, sizes, padded_rows, call_cost):
    cost, start = 0, 0
    for size in sizes:
        cost += call_cost + padded_rows[size - 1] * lengths[start + size - 1]
        start += size
    return cost


def test_plan_batches_finds_the_cheapest_cuts():
    """Against every way to cut the windows into consecutive batches, for exact rows and rows padded to a power of
    two; and a case worked out by hand."""
    import itertools

    rng = np.random.RandomState(0)
    for trial in range(60):
        n, batch_size = rng.randint(1, 9), rng.randint(1, 5)
        lengths = sorted(rng.randint(2, 40, size=n).tolist())
        for padded_rows in (list(range(1, batch_size + 1)),
                            [min(batch_size, 1 << (r - 1).bit_length()) for r in range(1, batch_size + 1)]):
            call_cost = [0, 5, 64][trial % 3]
            sizes = plan_batches(lengths, padded_rows, call_cost)
            assert sum(sizes) == n and max(sizes) <= batch_size
            best = min(_batch_costs(lengths, cuts, padded_rows, call_cost)
                       for k in range(1, n + 1) for cuts in itertools.product(range(1, batch_size + 1), repeat=k)
                       if sum(cuts) == n)
            assert _batch_costs(lengths, sizes, padded_rows, call_cost) == best
    # 4 short windows and 2 long ones: two calls (4 x 10 + 2 x 100 + 2 x 8 = 256) beat one (6 x 100 + 8 = 608)
    # and three (4 x 10 + 100 + 100 + 3 x 8 = 264)
    assert plan_batches([10, 10, 10, 10, 100, 100], [1, 2, 3, 4, 5, 6], call_cost=8) == [4, 2]


def test_bench_workload_runs_at_least_90_percent_real_tokens():
    """The 10,451-character latency workload: with the planned batches at least 90 % of the tokens run are real
    (characters, [CLS], [SEP]) -- fixed batches of 32 ran 79 %."""
    import os

    bench = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "bench", "msra_test_10451_chars.txt")
    vocab = os.path.join(os.path.dirname(bench), "..", "bert-base-chinese", "vocab.txt")
    if not (os.path.isfile(bench) and os.path.isfile(vocab)):
        pytest.skip("../shared/data/bench (the latency workload) or bert-base-chinese's vocab.txt is absent")
    from ner_ofa.features import CharEncoder
    from ner_ofa.labelling import predict_entities
    from ner_ofa.timing import MSRA_LABELS, Meter, read_workload
    from paddlenlp.transformers import BertTokenizer

    encoder = CharEncoder(BertTokenizer(vocab))
    texts = read_workload(bench)

    def model(input_ids):
        return np.zeros(input_ids.shape + (len(MSRA_LABELS),), dtype=np.float32)

    for shapes, at_least in (("exact", 0.94), ("buckets", 0.90)):
        meter = Meter(model, encoder.pad_id)
        predict_entities(meter, texts, encoder, MSRA_LABELS, 128, 32, shapes)
        assert meter.real_tokens == 11536  # the characters of every window (overlaps twice), [CLS], [SEP]
        assert meter.real_tokens / meter.tokens >= at_least, (shapes, meter.real_tokens, meter.tokens)
