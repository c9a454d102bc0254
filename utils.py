"""What the three stages share about the data and its scores: the NER data format (read, write, validate), label
sets, the dev split, PaddleNLP's ``msra_ner``; characters to ids, windows and batches of features; BIO decoding
and PaddleNLP ChunkEvaluator scoring, and text -> entities. It is the bottom of the design: it imports nothing
of this project (ner_ofa/ builds on it), and so it defines the project's logger and its bad-input error."""
import hashlib
import json
import logging
import os
import random
import re

import numpy as np

logger = logging.getLogger("msra_ner_ofa")


class UserError(Exception):
    """Bad input (data, flags, model directories): reported as one line, exit code 2, nothing written."""

TOKEN_SEP = "\x02"


_LABEL_RE = re.compile(r"^[BI]-\S+$")


def check_label(label, where):
    if label != "O" and not _LABEL_RE.match(label):
        raise UserError(f"{where}: label {label!r} is not BIO (O, B-TYPE or I-TYPE)")


def read_ner_file(path):
    """Read one msra_ner-layout file into a list of {'chars', 'labels', 'where'} examples."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: data file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    examples = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        if "\t" not in line:
            raise UserError(f"{where}: no TAB between the characters and the labels")
        chars_part, labels_part = line.split("\t", 1)
        if not chars_part:
            raise UserError(f"{where}: empty sentence")
        chars, labels = chars_part.split(TOKEN_SEP), labels_part.split(TOKEN_SEP)
        if len(chars) != len(labels):
            raise UserError(f"{where}: {len(chars)} characters but {len(labels)} labels")
        for label in labels:
            check_label(label, where)
        examples.append({"chars": chars, "labels": labels, "where": where})
    if not examples:
        raise UserError(f"{path}: no sentences (empty file)")
    return examples


def write_ner_file(path, examples):
    with open(path, "w", encoding="utf-8") as handle:
        for ex in examples:
            handle.write(TOKEN_SEP.join(ex["chars"]) + "\t" + TOKEN_SEP.join(ex["labels"]) + "\n")


def label_list_from(examples):
    """O first, then B-/I- pairs of every entity type seen, sorted by type."""
    types = sorted({label[2:] for ex in examples for label in ex["labels"] if label != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]


def read_label_file(path):
    with open(path, encoding="utf-8") as handle:
        labels = [line.strip() for line in handle if line.strip()]
    if not labels:
        raise UserError(f"{path}: no labels")
    for lineno, label in enumerate(labels, 1):
        check_label(label, f"{path}:{lineno}")
    if len(set(labels)) != len(labels):
        raise UserError(f"{path}: duplicate labels")
    return labels


def check_labels_known(examples, label_list, split):
    known = set(label_list)
    for ex in examples:
        for label in ex["labels"]:
            if label not in known:
                raise UserError(f"{ex['where']}: label {label!r} in {split} is not in the label set "
                                f"({' '.join(label_list)})")


def _load_online_msra():
    """PaddleNLP's msra_ner (the default, online path)."""
    try:
        from paddlenlp.datasets import load_dataset

        train_ds, test_ds = load_dataset("msra_ner", splits=("train", "test"), lazy=False)
    except Exception as error:  # network, server, cache
        raise UserError(f"could not load PaddleNLP's msra_ner ({type(error).__name__}: {error}); "
                        "give a local copy with --data_dir") from None
    label_list = list(train_ds.label_list)

    def convert(ds, split):
        return [{"chars": list(ex["tokens"]), "labels": [label_list[i] for i in ex["labels"]],
                 "where": f"msra_ner/{split}:{n + 1}"} for n, ex in enumerate(ds)]

    return convert(train_ds, "train"), None, convert(test_ds, "test"), None


def split_dev(train, dev_ratio, seed):
    """A seeded dev split carved from train; returns (train, dev)."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(len(train) * dev_ratio)))
    if n_dev >= len(train):
        raise UserError(f"train has {len(train)} sentences: too few to hold out --dev_ratio {dev_ratio} as dev")
    dev_ids = set(order[:n_dev])
    return [ex for i, ex in enumerate(train) if i not in dev_ids], [ex for i, ex in enumerate(train) if i in dev_ids]


def load_splits(args, label_list=None):
    """Return {'train', 'dev', 'test', 'labels', 'dev_source'}.

    Labels come from ``label_list`` (a trained model's), else ``labels.txt`` in --data_dir, else the
    training data. Dev is the data's own dev split if present, else a seeded --dev_ratio of train."""
    if args.data_dir:
        if not os.path.isdir(args.data_dir):
            raise UserError(f"--data_dir {args.data_dir}: not a directory")
        train = read_ner_file(os.path.join(args.data_dir, "train.tsv"))
        dev_path = os.path.join(args.data_dir, "dev.tsv")
        dev = read_ner_file(dev_path) if os.path.exists(dev_path) else None
        test = read_ner_file(os.path.join(args.data_dir, "test.tsv"))
        labels_path = os.path.join(args.data_dir, "labels.txt")
        file_labels = read_label_file(labels_path) if os.path.exists(labels_path) else None
    else:
        train, dev, test, file_labels = _load_online_msra()
    if label_list is None:
        label_list = file_labels or label_list_from(train)
    check_labels_known(train, label_list, "train")
    if dev is None:
        dev_split = {"from": "train", "dev_ratio": args.dev_ratio, "seed": args.seed, "train_sentences": len(train)}
        train, dev = split_dev(train, args.dev_ratio, args.seed)
        dev_source = f"{args.dev_ratio:g} of train (seed {args.seed})"
    else:
        dev_split = {"from": "dev.tsv"}
        dev_source = "dev.tsv"
        check_labels_known(dev, label_list, "dev")
    check_labels_known(test, label_list, "test")
    return {"train": train, "dev": dev, "test": test, "labels": list(label_list), "dev_source": dev_source,
            "dev_split": dev_split}


def describe_splits(data, data_dir):
    """One log line: sentences per split, where dev came from, where the data came from."""
    return (f"train {len(data['train'])}, dev {len(data['dev'])} ({data['dev_source']}), test {len(data['test'])} "
            f"sentences | {data_dir or 'PaddleNLP msra_ner'}")


def teacher_dev_split(teacher_dir, info):
    """How the teacher's dev split was made: model_info.json's ``dev_split``, else (older teachers) its
    args.json's --seed/--dev_ratio (the data then had no dev.tsv unless args.json says otherwise)."""
    if "dev_split" in info:
        return info["dev_split"]
    args_path = os.path.join(teacher_dir, "args.json")
    if not os.path.isfile(args_path):
        return None
    with open(args_path, encoding="utf-8") as handle:
        teacher_args = json.load(handle)
    return {"from": "train", "dev_ratio": teacher_args.get("dev_ratio"), "seed": teacher_args.get("seed")}


def check_same_dev_split(teacher_split, split):
    """Stage 2 must score on the teacher's dev split: a dev carved from train with another seed/ratio (or from
    other data) holds sentences the teacher trained on, and its scores would look better than they are."""
    if split["from"] == "dev.tsv" or teacher_split is None:
        return
    if teacher_split["from"] == "dev.tsv":
        raise UserError("the teacher was scored on the data's dev.tsv, but this data has none; give the same "
                        "--data_dir")
    for key, flag in (("seed", "--seed"), ("dev_ratio", "--dev_ratio")):
        if teacher_split.get(key) != split[key]:
            raise UserError(f"{flag} {split[key]} differs from the teacher's {teacher_split.get(key)}: dev would "
                            f"hold sentences the teacher trained on; pass {flag} {teacher_split.get(key)} (or give a "
                            "dev.tsv)")
    if teacher_split.get("train_sentences", split["train_sentences"]) != split["train_sentences"]:
        raise UserError(f"train has {split['train_sentences']} sentences, the teacher's had "
                        f"{teacher_split['train_sentences']}: not the teacher's data, so dev would not be its dev "
                        "split; give the same --data_dir (or a dev.tsv)")


def sentences_sha256(examples):
    """sha256 of the sentences' characters and labels, in order (not of a file: the same data read from any
    source gives the same hash)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update((TOKEN_SEP.join(ex["chars"]) + "\t" + TOKEN_SEP.join(ex["labels"]) + "\n").encode("utf-8"))
    return digest.hexdigest()


def data_fingerprint(data):
    """What stage 1 records of the data it trained and was scored on (model_info.json ``data``): the sentences and
    content hash of its train split (after dev was carved out of it, if it was) and of its dev split."""
    return {f"{split}_{what}": fn(data[split]) for split in ("train", "dev")
            for what, fn in (("sentences", len), ("sha256", sentences_sha256))}


def check_same_data(teacher_data, data):
    """Stage 2 must distil on the teacher's training data and score on its dev split: their content hashes must
    equal the teacher's record (a file of as many sentences is not the same data). A teacher that records none
    (made before the record existed) gets a warning, not a refusal: it still passed the sentence-count and
    dev-split checks, and refusing it would throw away its training. Returns whether the content was compared."""
    if not teacher_data:
        logger.warning("the teacher records no hash of its data (made by an older run_msra_ner.py): only its "
                       "sentence count and dev split were checked; make sure --data_dir is the one it was trained on")
        return False
    mine = data_fingerprint(data)
    for split in ("train", "dev"):
        key = f"{split}_sha256"
        if teacher_data.get(key) != mine[key]:
            raise UserError(f"{split} ({mine[split + '_sentences']} sentences, sha256 {mine[key][:12]}) is not the "
                            f"teacher's ({teacher_data.get(split + '_sentences')} sentences, sha256 "
                            f"{str(teacher_data.get(key))[:12]}): give the --data_dir, --seed and --dev_ratio it was "
                            "trained with")
    return True


class CharEncoder:
    """Maps each character to exactly one vocabulary id, so labels stay aligned to characters.

    A character is looked up as it is, then lower-cased; one missing both ways (or whitespace, or an empty
    token) becomes [UNK]. The rule depends only on the vocabulary, not on the tokenizer's ``do_lower_case``
    (the hub's bert-base-chinese says False, a tokenizer built from a local vocab.txt True), so the same
    character gets the same id whichever way the model was loaded."""

    def __init__(self, tokenizer):
        vocab = tokenizer.vocab
        self.token_to_id = dict(vocab.token_to_idx)
        self.unk_id = self.token_to_id[tokenizer.unk_token]
        self.cls_id = self.token_to_id[tokenizer.cls_token]
        self.sep_id = self.token_to_id[tokenizer.sep_token]
        self.pad_id = self.token_to_id[tokenizer.pad_token]

    def char_id(self, char):
        found = self.token_to_id.get(char)
        if found is None:
            found = self.token_to_id.get(char.lower())
        return self.unk_id if found is None or not char.strip() else found

    def encode(self, chars):
        return [self.char_id(c) for c in chars]


def make_windows(length, size):
    """[start, end) windows of at most ``size`` covering 0..length, for a text the model cannot take in one.

    One window if the text fits. Otherwise ``n`` windows of one length, their starts spread evenly over the text:
    ``n - 1`` is the number of half windows (``size // 2``) the text is longer than ``size``, rounded to the
    nearest (at least 1), and the windows are only as long as ``n`` of them need to overlap by half a window
    (``size`` at most). So consecutive windows overlap by half a window, or, where full-size windows cannot, by
    no less than about a quarter: every character lies about ``size / 8`` or more from the edge of one window.
    No window nearly repeats another (a last window pinned to the text's end would): 190 characters in windows
    of 126 are (0, 126), (64, 190); 127 are (0, 95), (32, 127)."""
    if length <= size:
        return [(0, length)]
    stride = max(1, size // 2)
    steps = max(1, (2 * (length - size) + stride) // (2 * stride))  # (length - size) / stride, rounded half up
    window = min(size, -(-(length + steps * stride) // (steps + 1)))  # n windows of it overlap by >= stride
    span = length - window
    return [(start, start + window) for start in (k * span // steps for k in range(steps + 1))]


def window_owner(length, windows):
    """For each position, the index of the window in which it lies farthest from an edge."""
    best = np.full(length, -1, dtype=np.int64)
    margin = np.full(length, -1, dtype=np.int64)
    for w, (start, end) in enumerate(windows):
        pos = np.arange(start, end)
        m = np.minimum(pos - start, end - 1 - pos)
        better = m > margin[start:end]
        best[start:end][better] = w
        margin[start:end][better] = m[better]
    return best


def train_features(examples, encoder, label_to_id, max_seq_length):
    """Training windows: long sentences are cut into consecutive non-overlapping pieces (nothing dropped)."""
    size = max_seq_length - 2
    features = []
    for ex in examples:
        ids = encoder.encode(ex["chars"])
        labels = [label_to_id[label] for label in ex["labels"]]
        for start in range(0, len(ids), size):
            features.append((ids[start:start + size], labels[start:start + size]))
    return features


IGNORE_INDEX = -100


def collate(features, encoder):
    """Pad a list of (char_ids, label_ids) to [CLS] ids [SEP] [PAD]...; labels IGNORE_INDEX outside characters."""
    width = max(len(ids) for ids, _ in features) + 2
    input_ids = np.full((len(features), width), encoder.pad_id, dtype="int64")
    labels = np.full((len(features), width), IGNORE_INDEX, dtype="int64")
    for row, (ids, label_ids) in enumerate(features):
        input_ids[row, 0] = encoder.cls_id
        input_ids[row, 1:len(ids) + 1] = ids
        input_ids[row, len(ids) + 1] = encoder.sep_id
        if label_ids is not None:
            labels[row, 1:len(ids) + 1] = label_ids
    return input_ids, labels


def predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list=None):
    """Label ids for every character of every sequence (lists of char ids), windowing long ones.

    ``logits_fn(input_ids: np.ndarray[int64, B x L]) -> np.ndarray[B x L x C]``. Each character takes its
    log-probabilities from the window in which it lies farthest from an edge. With ``label_list`` (BIO names)
    the labels are the best sequence that is valid BIO (``constrained_decode``); without it, the per-character
    argmax."""
    labelling = Labelling(sequences, encoder, max_seq_length)
    while labelling.remaining():
        labelling.score_next(logits_fn, batch_size)
    return labelling.label_ids(label_list)


class Labelling:
    """The labelling of some sequences, one model call at a time: their windows, shortest first, are scored in
    batches of at most ``batch_size`` by :meth:`score_next` -- so a caller can interleave several labellings --
    and :meth:`label_ids` assembles each character's scores from the window where it lies farthest from an edge."""

    def __init__(self, sequences, encoder, max_seq_length):
        self.sequences, self.encoder, self.max_seq_length = sequences, encoder, max_seq_length
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

    def remaining(self):
        """Windows not scored yet."""
        return len(self.items) - self.next

    def score_next(self, logits_fn, batch_size):
        """Score the next (at most ``batch_size``) windows in one model call."""
        chunk = self.items[self.next:self.next + batch_size]
        self.next += len(chunk)
        input_ids, _ = collate([(self.sequences[s][start:end], None) for s, _, start, end in chunk], self.encoder)
        padded = pad_to_shape_bucket(input_ids, self.encoder.pad_id, self.max_seq_length, batch_size)
        scores = log_softmax(np.asarray(logits_fn(padded), dtype=np.float32)[:len(chunk), :input_ids.shape[1]])
        self.num_classes = scores.shape[-1]
        for row, (s, w, start, end) in enumerate(chunk):
            self.window_scores[(s, w)] = scores[row, 1:end - start + 1]

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
        if label_list is None:
            return [scores.argmax(-1).astype(np.int64) for scores in per_sequence]
        return constrained_decode(per_sequence, label_list)


SHAPE_MULTIPLE = 8


def pad_to_shape_bucket(input_ids, pad_id, max_seq_length, batch_size):
    """Pad a batch to one of a few shapes: length up to a multiple of 8 (at most ``max_seq_length``), rows up to a
    power of two (at most ``batch_size``), with [PAD], which the model masks. Paddle Inference with oneDNN keeps
    kernels per input shape, so a long-lived process that saw every (rows, length) pair grew its memory with
    them; with at most ~16 lengths x 6 row counts it stays flat (results/serve_cpu.json). The extra rows and
    positions are dropped from the logits."""
    rows, length = input_ids.shape
    want_length = min(max(length, max_seq_length), -(-length // SHAPE_MULTIPLE) * SHAPE_MULTIPLE)
    want_rows = min(max(rows, batch_size), 1 << (rows - 1).bit_length())
    if (want_rows, want_length) == (rows, length):
        return input_ids
    padded = np.full((want_rows, want_length), pad_id, dtype=input_ids.dtype)
    padded[:rows, :length] = input_ids
    return padded


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
        back[:, 0] = np.arange(n)
        for t in range(1, steps):
            cand = score[:, :, None] + trans  # previous tag x next tag
            best = cand.argmax(1)
            active = (t < lengths)[:, None]
            score = np.where(active, np.take_along_axis(cand, best[:, None, :], 1)[:, 0] + emit[:, t], score)
            back[:, t] = np.where(active, best, np.arange(n))  # past a sequence's end: keep its last tag
        path = np.empty((len(idx), steps), dtype=np.int64)
        path[:, -1] = score.argmax(1)
        rows = np.arange(len(idx))
        for t in range(steps - 1, 0, -1):
            path[:, t - 1] = back[rows, t, path[:, t]]
        for row, i in enumerate(idx):
            results[i] = path[row, :lengths[row]]
    return results


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


def predict_entities(logits_fn, texts, encoder, label_list, max_seq_length, batch_size):
    """Texts → per text a list of {'type', 'text', 'start', 'end'} with character offsets into the text."""
    sequences = [encoder.encode(list(text)) for text in texts]
    preds = predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list)
    return entities_from_label_ids(texts, preds, label_list)


def entities_from_label_ids(texts, preds, label_list):
    """Per text its entities ({'type', 'text', 'start', 'end'}) from its characters' label ids."""
    results = []
    for text, pred in zip(texts, preds):
        labels = [label_list[i] for i in pred]
        results.append([{"type": t, "text": text[s:e], "start": s, "end": e} for t, s, e in spans_from_labels(labels)])
    return results