"""Logits to labels and entities: each character's scores from its best window, BIO-constrained Viterbi
decoding, spans and entities (with scores) from label ids."""
import numpy as np

from ner_ofa.features import SHAPES, collate, make_windows, pad_to_shape, shape_bucket, window_owner


def predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list=None, shapes="buckets"):
    """Label ids for every character of every sequence (lists of char ids), windowing long ones.

    ``logits_fn(input_ids: np.ndarray[int64, B x L]) -> np.ndarray[B x L x C]``. Each character takes its
    log-probabilities from the window in which it lies farthest from an edge. With ``label_list`` (BIO names)
    the labels are the best sequence that is valid BIO (``constrained_decode``); without it, the per-character
    argmax. ``shapes``: see :class:`Labelling`."""
    labelling = Labelling(sequences, encoder, max_seq_length, shapes)
    while labelling.remaining():
        labelling.score_next(logits_fn, batch_size)
    return labelling.label_ids(label_list)


CALL_COST_TOKENS = 64  # what one more model call costs, in tokens: plan_batches trades it against padding


def plan_batches(lengths, padded_rows, call_cost=CALL_COST_TOKENS):
    """Cut windows of ascending (padded) ``lengths`` into consecutive batches of at most ``len(padded_rows)``, the
    cuts that minimise the tokens run -- ``padded_rows[r - 1]`` (the rows a batch of r windows is padded to) x its
    last window's length, summed -- plus ``call_cost`` per batch: a dynamic programme over where each batch
    starts. Returns the batch sizes in order.

    Fixed batches of ``batch_size`` pad the short windows of a batch to its longest one; here a batch ends where
    the windows start to grow faster than a new call costs."""
    padded_rows = np.asarray(padded_rows)
    n = len(lengths)
    best = np.zeros(n + 1)
    size_of = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        count = min(len(padded_rows), end)  # the batch ending at ``end`` holds 1..count windows
        cost = best[end - 1::-1][:count] + call_cost + padded_rows[:count] * lengths[end - 1]
        pick = int(cost.argmin())
        best[end], size_of[end] = cost[pick], pick + 1
    sizes, end = [], n
    while end:
        sizes.append(int(size_of[end]))
        end -= sizes[-1]
    return sizes[::-1]


class Labelling:
    """The labelling of some sequences, one model call at a time: their windows, shortest first, are scored in
    batches of at most ``batch_size`` by :meth:`score_next` -- so a caller can interleave several labellings --
    and :meth:`label_ids` assembles each character's scores from the window where it lies farthest from an edge.

    The batches are those of :func:`plan_batches`. ``shapes="buckets"`` pads each call to a
    :func:`~ner_ofa.features.shape_bucket` (Paddle Inference keeps kernels per shape); ``"exact"`` runs it as it is
    (ONNX Runtime, dygraph). The padding is masked: it changes no fp32 label."""

    def __init__(self, sequences, encoder, max_seq_length, shapes="buckets"):
        if shapes not in SHAPES:
            raise ValueError(f"shapes must be one of {SHAPES}, got {shapes!r}")
        self.sequences, self.encoder, self.max_seq_length, self.shapes = sequences, encoder, max_seq_length, shapes
        size = max_seq_length - 2
        self.items = []  # (sequence index, window index, start, end)
        self.owners = []
        for s, ids in enumerate(sequences):
            windows = make_windows(len(ids), size)
            self.owners.append((windows, window_owner(len(ids), windows)))
            self.items.extend((s, w, start, end) for w, (start, end) in enumerate(windows))
        self.items.sort(key=lambda item: item[3] - item[2])
        self.next = 0
        self.window_scores = {}
        self.num_classes = 1
        self.plan = None  # (batch size, the planned batch sizes left, last first): see score_next

    def remaining(self):
        """Windows not scored yet."""
        return len(self.items) - self.next

    def shape_of(self, rows, length, batch_size):
        if self.shapes == "exact":
            return rows, length
        return shape_bucket(rows, length, self.max_seq_length, batch_size)

    def score_next(self, logits_fn, batch_size):
        """Score the next planned batch (at most ``batch_size`` windows) in one model call; returns its size."""
        if self.plan is None or self.plan[0] != batch_size:  # plan what is left for this batch size
            lengths = [self.shape_of(1, end - start + 2, batch_size)[1] for _, _, start, end in self.items[self.next:]]
            rows = [self.shape_of(r, 1, batch_size)[0] for r in range(1, batch_size + 1)]
            self.plan = (batch_size, plan_batches(lengths, rows)[::-1])
        chunk = self.items[self.next:self.next + self.plan[1].pop()]
        self.next += len(chunk)
        input_ids, _ = collate([(self.sequences[s][start:end], None) for s, _, start, end in chunk], self.encoder)
        padded = pad_to_shape(input_ids, self.encoder.pad_id, self.shape_of(*input_ids.shape, batch_size))
        scores = log_softmax(np.asarray(logits_fn(padded), dtype=np.float32)[:len(chunk), :input_ids.shape[1]])
        self.num_classes = scores.shape[-1]
        for row, (s, w, start, end) in enumerate(chunk):
            self.window_scores[(s, w)] = scores[row, 1:end - start + 1]
        return len(chunk)

    def label_ids(self, label_list=None):
        """Per sequence its label ids, once every window is scored (see :func:`predict_label_ids`)."""
        assert not self.remaining(), "windows left to score"
        per_sequence = []
        for s, ids in enumerate(self.sequences):
            windows, owner = self.owners[s]
            out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
            for w, (start, end) in enumerate(windows):
                mine = owner[start:end] == w
                out[start:end][mine] = self.window_scores.pop((s, w))[mine]
            per_sequence.append(out)
        self.per_sequence = per_sequence  # log-probabilities, kept for label_probs()
        if label_list is None:
            return [scores.argmax(-1).astype(np.int64) for scores in per_sequence]
        return constrained_decode(per_sequence, label_list)

    def label_probs(self, label_ids):
        """Per sequence each character's probability (softmax over its window's logits) of the label it got; after
        :meth:`label_ids`."""
        return [np.exp(scores[np.arange(len(ids)), ids]) for scores, ids in zip(self.per_sequence, label_ids)]


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def bio_transitions(label_list):
    """(start, transition) scores for BIO tags: 0 where allowed, -1e9 where an I-X would not continue B-X/I-X."""
    n = len(label_list)
    start, trans = np.zeros(n), np.zeros((n, n))
    for j, label in enumerate(label_list):
        if label.startswith("I-"):
            start[j] = -1e9
            for i, prev in enumerate(label_list):
                if prev[:2] not in ("B-", "I-") or prev[2:] != label[2:]:
                    trans[i, j] = -1e9
    return start, trans


def decode_chunks(lengths, max_cells=1 << 18):
    """Group sequence indices (shortest first) so that each group, padded to its longest, holds at most
    ``max_cells`` characters; a longer sequence goes alone. Bounds :func:`constrained_decode`'s memory by
    characters, whatever the number of sequences."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks, current = [], []
    for i in order:
        if current and (len(current) + 1) * max(lengths[i], 1) > max_cells:
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks


def constrained_decode(score_list, label_list, max_cells=1 << 18):
    """Viterbi over per-character log-probabilities, restricted to valid BIO sequences.

    A softmax tagger decodes characters independently, so its argmax can start an entity with I-X or switch
    type inside one; each such slip makes a wrong extra chunk. This picks the most probable sequence among the
    valid ones instead (no learned transitions: the same model scores, only the invalid paths are removed)."""
    start, trans = bio_transitions(label_list)
    n = len(label_list)
    results = [None] * len(score_list)
    for idx in decode_chunks([len(scores) for scores in score_list], max_cells):
        lengths = np.array([len(score_list[i]) for i in idx])
        steps = int(lengths.max())
        if steps == 0:
            for i in idx:
                results[i] = np.zeros(0, dtype=np.int64)
            continue
        emit = np.zeros((len(idx), steps, n))
        for row, i in enumerate(idx):
            emit[row, :lengths[row]] = score_list[i]
        score = emit[:, 0] + start
        back = np.empty((len(idx), steps, n), dtype=np.int64)
        back[:] = np.arange(n)  # past a sequence's end: keep its last tag
        for t in range(1, steps):
            first = int(np.searchsorted(lengths, t, side="right"))  # lengths ascend: rows first.. are still running
            cand = score[first:, :, None] + trans  # previous tag x next tag
            back[first:, t] = cand.argmax(1)
            score[first:] = cand.max(1) + emit[first:, t]
        path = np.empty((len(idx), steps), dtype=np.int64)
        path[:, -1] = score.argmax(1)
        rows = np.arange(len(idx))
        for t in range(steps - 1, 0, -1):
            path[:, t - 1] = back[rows, t, path[:, t]]
        for row, i in enumerate(idx):
            results[i] = path[row, :lengths[row]]
    return results


def spans_from_labels(labels):
    """BIO label strings → [(type, start, end)], end exclusive. An I- without a matching B- starts a span."""
    spans, current = [], None
    for i, label in enumerate(list(labels) + ["O"]):
        prefix, entity_type = (label[0], label[2:]) if label != "O" else ("O", None)
        if current and (prefix != "I" or entity_type != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = (entity_type, i)
    return spans


def predict_entities(logits_fn, texts, encoder, label_list, max_seq_length, batch_size, shapes="buckets"):
    """Texts → per text a list of {'type', 'text', 'start', 'end', 'score'} with character offsets into the text
    (see :func:`entities_from_label_ids` for the score; ``shapes``: see :class:`Labelling`)."""
    labelling = Labelling([encoder.encode(list(text)) for text in texts], encoder, max_seq_length, shapes)
    while labelling.remaining():
        labelling.score_next(logits_fn, batch_size)
    preds = labelling.label_ids(label_list)
    return entities_from_label_ids(texts, preds, label_list, labelling.label_probs(preds))


SCORE_DIGITS = 4


def entity_score(char_probs):
    """An entity's score: the mean, over its characters, of the probability the model gives the label each got
    (B-X, I-X ...), rounded to 4 digits; in [0, 1]. It is not a calibrated probability that the span is right."""
    return round(float(char_probs.mean()), SCORE_DIGITS)


def entities_from_label_ids(texts, preds, label_list, probs=None):
    """Per text its entities ({'type', 'text', 'start', 'end'}, and 'score' when ``probs``, each character's
    probability of its label, is given) from its characters' label ids."""
    results = []
    for n, (text, pred) in enumerate(zip(texts, preds)):
        labels = [label_list[i] for i in pred]
        entities = []
        for t, s, e in spans_from_labels(labels):
            entity = {"type": t, "text": text[s:e], "start": s, "end": e}
            if probs is not None:
                entity["score"] = entity_score(probs[n][s:e])
            entities.append(entity)
        results.append(entities)
    return results
