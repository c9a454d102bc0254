"""Characters to model inputs: one vocabulary id per character, windows over long texts, training features,
batches and their padding to a few shapes."""
import numpy as np


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
        self._ids = {}  # char -> id, filled as characters are seen (dict updates are atomic: threads may share it)

    def char_id(self, char):
        found = self.token_to_id.get(char)
        if found is None:
            found = self.token_to_id.get(char.lower())
        return self.unk_id if found is None or not char.strip() else found

    def encode(self, chars):
        ids = self._ids
        out = [ids.get(c, -1) for c in chars]
        for i, found in enumerate(out):
            if found < 0:
                out[i] = ids[chars[i]] = self.char_id(chars[i])
        return out


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


def unlabeled_features(sentences, encoder, max_seq_length):
    """Windows of unlabelled sentences, cut as :func:`train_features` cuts, for stage 2 to distil on: their labels
    are 0 placeholders, which only mark where the characters are (distillation learns from the teacher's outputs,
    never from labels)."""
    return train_features([{"chars": s, "labels": [None] * len(s)} for s in sentences], encoder, {None: 0},
                          max_seq_length)


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


SHAPE_MULTIPLE = 8
SHAPES = ("buckets", "exact")


def shape_bucket(rows, length, max_seq_length, batch_size):
    """The (rows, length) a batch of ``rows`` windows of at most ``length`` tokens is padded to for Paddle
    Inference: length up to a multiple of 8 (at most ``max_seq_length``), rows up to a power of two (at most
    ``batch_size``). Paddle Inference with oneDNN keeps kernels per input shape, so a long-lived process that saw
    every (rows, length) pair grew its memory with them; with at most ~16 lengths x 6 row counts it stays flat
    (results/serve_cpu.json). ONNX Runtime keeps no per-shape kernels: its batches run as they are ("exact")."""
    return (min(max(rows, batch_size), 1 << (rows - 1).bit_length()),
            min(max(length, max_seq_length), -(-length // SHAPE_MULTIPLE) * SHAPE_MULTIPLE))


def pad_to_shape(input_ids, pad_id, shape):
    """``input_ids`` padded with [PAD] (which the model masks) to ``shape``; the caller drops the extra rows and
    positions from the logits."""
    if tuple(shape) == input_ids.shape:
        return input_ids
    padded = np.full(shape, pad_id, dtype=input_ids.dtype)
    padded[:input_ids.shape[0], :input_ids.shape[1]] = input_ids
    return padded
