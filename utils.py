"""Helpers shared by the three stages (teacher, OFA distillation, export) and predict.py.

Sections: errors and versions · flags · data (reading, labels, splits) · encoding and windows · batching ·
evaluation and prediction · model directories (load/save) · width supernet (importance, reordering,
widths, cutting a sub-model) · Paddle Inference.

Importing this module changes no library: PaddleSlim fixes are applied by an explicit call
(``paddleslim_compat.apply_paddleslim_fixes``) inside :func:`build_supernet`.
"""
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time

import numpy as np

logger = logging.getLogger("msra_ner_ofa")

# --------------------------------------------------------------------------- errors and versions


class UserError(Exception):
    """Bad input (data, flags, model directories): reported as one line, exit code 2, nothing written."""


SUPPORTED = {
    "paddle": ("3.0", "3.1", "3.2"),  # major.minor; requirements.txt pins 3.1.1
    "paddlenlp": ("2.8.1",),
    "paddleslim": ("2.6.0",),
}


def _dist_version(*names):
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_versions():
    """Fail with a one-line fix when the installed stack is not the supported one."""
    fix = "install the pinned stack: pip install -r requirements.txt"
    paddle_version = _dist_version("paddlepaddle", "paddlepaddle-gpu")
    found = {
        "paddle": paddle_version,
        "paddlenlp": _dist_version("paddlenlp"),
        "paddleslim": _dist_version("paddleslim"),
        "numpy": _dist_version("numpy"),
    }
    problems = []
    if found["paddle"] is None or ".".join(found["paddle"].split(".")[:2]) not in SUPPORTED["paddle"]:
        problems.append(f"paddlepaddle {found['paddle']} (need 3.0-3.2)")
    for name in ("paddlenlp", "paddleslim"):
        if found[name] not in SUPPORTED[name]:
            problems.append(f"{name} {found[name]} (need {SUPPORTED[name][0]})")
    if found["numpy"] is None or int(found["numpy"].split(".")[0]) >= 2:
        problems.append(f"numpy {found['numpy']} (need <2)")
    if problems:
        raise UserError("unsupported package versions: " + ", ".join(problems) + f"; {fix}")
    return found


def setup_logging(rank=0):
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    # PaddleNLP logs every config load at INFO; keep our log dense.
    try:
        from paddlenlp.utils.log import logger as nlp_logger

        nlp_logger.set_level("WARNING")
    except Exception:  # pragma: no cover - logging only
        pass


def cli(main, parse_args, argv=None):
    """Run ``main(parse_args(argv))``; bad input becomes one line on stderr and exit code 2."""
    args = parse_args(argv)
    try:
        result = main(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    return result


# --------------------------------------------------------------------------- flags


def add_model_data_args(parser, model_help):
    parser.add_argument("--model_name_or_path", default="bert-base-chinese", help=model_help)
    parser.add_argument("--data_dir", default=None,
                        help="directory with train.tsv [dev.tsv] test.tsv in the msra_ner layout (characters joined "
                             "by U+0002, TAB, labels joined by U+0002) and optionally labels.txt; default: download "
                             "PaddleNLP's msra_ner")
    parser.add_argument("--dev_ratio", type=float, default=0.1,
                        help="fraction of train held out (seeded) as dev when the data has no dev split")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="tokens per window including [CLS]/[SEP]; longer sentences are split, never dropped")
    parser.add_argument("--device", choices=["cpu", "gpu", "xpu"], default="gpu", help="device to run on")
    parser.add_argument("--seed", type=int, default=42, help="random seed (data order, dev split, init)")


def add_training_args(parser, lr, epochs):
    parser.add_argument("--batch_size", type=int, default=32, help="sentences (windows) per batch, per card")
    parser.add_argument("--learning_rate", type=float, default=lr, help="peak learning rate of AdamW")
    parser.add_argument("--num_train_epochs", type=float, default=epochs, help="epochs (ignored if --max_steps > 0)")
    parser.add_argument("--max_steps", type=int, default=-1, help="total optimizer steps; > 0 overrides epochs")
    parser.add_argument("--warmup_proportion", type=float, default=0.1, help="linear warm-up fraction of steps")
    parser.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay (not on bias/norm)")
    parser.add_argument("--logging_steps", type=int, default=100, help="log one line every N steps")
    parser.add_argument("--save_steps", type=int, default=500, help="evaluate on dev (and keep the best) every N steps")
    parser.add_argument("--output_dir", required=True, help="where the best model(s) and metrics go")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/checkpoint/ (weights, optimizer, scheduler, step, best so far)")


def validate_common_args(args):
    if args.max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {args.max_seq_length}")
    if getattr(args, "batch_size", 1) <= 0:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}")
    if not 0.0 < args.dev_ratio < 1.0:
        raise UserError(f"--dev_ratio must be in (0, 1), got {args.dev_ratio}")
    for name in ("logging_steps", "save_steps"):
        if getattr(args, name, 1) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    out = getattr(args, "output_dir", None)
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--output_dir {out} exists and is not a directory")


def start_run(args):
    """What every training stage does first: distributed env, logging, versions, flags, device, seed.
    Returns (rank, world_size, versions)."""
    rank, world_size = init_distributed()
    setup_logging(rank)
    versions = check_versions()
    validate_common_args(args)
    set_device(args.device)
    set_seed(args.seed)
    return rank, world_size, versions


GPU_INSTALL = ("pip install paddlepaddle-gpu==3.1.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu118/ "
               "&& pip uninstall -y paddlepaddle")


def set_device(device):
    import paddle

    if device == "gpu" and not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        if not paddle.device.is_compiled_with_cuda():
            raise UserError(f"--device gpu: this Paddle is the CPU-only build; on a CUDA 11.8 machine run "
                            f"{GPU_INSTALL} (see README), or use --device cpu")
        raise UserError("--device gpu: Paddle sees no CUDA GPU; use --device cpu")
    if device == "xpu" and not paddle.device.is_compiled_with_xpu():
        raise UserError("--device xpu: this Paddle build has no XPU support; use --device cpu")
    paddle.set_device(device)


def set_seed(seed):
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def init_distributed():
    """Return (rank, world_size); initialise the collective env under paddle.distributed.launch."""
    import paddle.distributed as dist

    world_size = dist.get_world_size()
    if world_size > 1:
        dist.init_parallel_env()
    return dist.get_rank(), world_size


def barrier(world_size):
    if world_size > 1:
        import paddle.distributed as dist

        dist.barrier()


def args_to_dict(args):
    return {k: v for k, v in sorted(vars(args).items())}


# --------------------------------------------------------------------------- data

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


def teacher_dev_split(teacher_dir, info):
    """How the teacher's dev split was made: model_info.json's ``dev_split``, else (older teachers) its
    args.json's --seed/--dev_ratio (the data then had no dev.tsv unless args.json says otherwise)."""
    if "dev_split" in info:
        return info["dev_split"]
    args_path = os.path.join(teacher_dir, "args.json")
    if not os.path.isfile(args_path):
        return None
    teacher_args = read_json(args_path)
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


# --------------------------------------------------------------------------- encoding and windows


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


def make_windows(length, size, stride=None):
    """[start, end) windows of at most ``size`` covering 0..length; consecutive windows overlap."""
    if length <= size:
        return [(0, length)]
    stride = stride or max(1, size // 2)
    starts = list(range(0, length - size, stride)) + [length - size]
    return [(s, s + size) for s in starts]


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


def bucketed_batches(lengths, batch_size, rng, pool_batches=50):
    """Shuffled batches of similar-length items (less padding): shuffle, sort within pools, shuffle batches."""
    order = rng.permutation(len(lengths))
    batches = []
    pool = batch_size * pool_batches
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def make_batch_sampler(lengths, batch_size, seed):
    """A length-bucketed ``paddle.io.DistributedBatchSampler``: each card gets its own share of batches."""
    import paddle

    class LengthBucketBatchSampler(paddle.io.DistributedBatchSampler):
        def __init__(self):
            super().__init__(dataset=lengths, batch_size=batch_size, shuffle=True)

        def _batches(self):
            all_batches = bucketed_batches(lengths, batch_size, np.random.RandomState(seed + self.epoch))
            per_rank = len(all_batches) // self.nranks if self.nranks > 1 else len(all_batches)
            return all_batches[self.local_rank::self.nranks][:per_rank]

        def __iter__(self):
            yield from self._batches()

        def __len__(self):
            n = math.ceil(len(lengths) / batch_size)
            return n // self.nranks if self.nranks > 1 else n

    return LengthBucketBatchSampler()


# --------------------------------------------------------------------------- evaluation and prediction


def predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list=None):
    """Label ids for every character of every sequence (lists of char ids), windowing long ones.

    ``logits_fn(input_ids: np.ndarray[int64, B x L]) -> np.ndarray[B x L x C]``. Each character takes its
    log-probabilities from the window in which it lies farthest from an edge. With ``label_list`` (BIO names)
    the labels are the best sequence that is valid BIO (``constrained_decode``); without it, the per-character
    argmax."""
    size = max_seq_length - 2
    items = []  # (sequence index, window index, start, end)
    owners = []
    for s, ids in enumerate(sequences):
        windows = make_windows(len(ids), size)
        owners.append((windows, window_owner(len(ids), windows)))
        items.extend((s, w, start, end) for w, (start, end) in enumerate(windows))
    items.sort(key=lambda item: item[3] - item[2])
    window_scores = {}
    num_classes = 1
    for b in range(0, len(items), batch_size):
        chunk = items[b:b + batch_size]
        input_ids, _ = collate([(sequences[s][start:end], None) for s, _, start, end in chunk], encoder)
        scores = log_softmax(np.asarray(logits_fn(input_ids), dtype=np.float32))
        num_classes = scores.shape[-1]
        for row, (s, w, start, end) in enumerate(chunk):
            window_scores[(s, w)] = scores[row, 1:end - start + 1]
    per_sequence = []
    for s, ids in enumerate(sequences):
        windows, owner = owners[s]
        out = np.zeros((len(ids), num_classes), dtype=np.float32)
        for w, (start, end) in enumerate(windows):
            mine = owner[start:end] == w
            out[start:end][mine] = window_scores.pop((s, w))[mine]
        per_sequence.append(out)
    if label_list is None:
        return [scores.argmax(-1).astype(np.int64) for scores in per_sequence]
    return constrained_decode(per_sequence, label_list)


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


def dynamic_logits_fn(model):
    """Wrap a dygraph token classifier (or OFA supernet) as numpy in → numpy logits out, in eval mode."""
    import paddle

    def run(input_ids):
        with paddle.no_grad():
            out = model(paddle.to_tensor(input_ids))
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.numpy()

    return run


def spans_from_labels(labels):
    """BIO label strings → [(type, start, end)], end exclusive. An I- without a matching B- starts a span."""
    spans, current = [], None
    for i, label in enumerate(list(labels) + ["O"]):
        prefix, kind = (label[0], label[2:]) if label != "O" else ("O", None)
        if current and (prefix != "I" or kind != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if prefix == "B" or (prefix == "I" and current is None):
            current = (kind, i)
    return spans


def predict_entities(logits_fn, texts, encoder, label_list, max_seq_length, batch_size):
    """Texts → per text a list of {'type', 'text', 'start', 'end'} with character offsets into the text."""
    sequences = [encoder.encode(list(text)) for text in texts]
    preds = predict_label_ids(logits_fn, sequences, encoder, max_seq_length, batch_size, label_list)
    results = []
    for text, pred in zip(texts, preds):
        labels = [label_list[i] for i in pred]
        results.append([{"type": t, "text": text[s:e], "start": s, "end": e} for t, s, e in spans_from_labels(labels)])
    return results


# --------------------------------------------------------------------------- model directories

WEIGHTS_NAME = "model_state.pdparams"
INFO_NAME = "model_info.json"
BERT_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "max_position_embeddings")


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path, data):
    """Write JSON atomically (temporary file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def load_tokenizer(name_or_dir):
    from paddlenlp.transformers import BertTokenizer

    if os.path.isdir(name_or_dir):
        vocab = os.path.join(name_or_dir, "vocab.txt")
        if not os.path.isfile(vocab):
            raise UserError(f"{name_or_dir}: no vocab.txt")
        if os.path.isfile(os.path.join(name_or_dir, "tokenizer_config.json")):
            return BertTokenizer.from_pretrained(name_or_dir)
        return BertTokenizer(vocab_file=vocab)
    try:
        return BertTokenizer.from_pretrained(name_or_dir)
    except Exception as error:
        raise UserError(f"could not get tokenizer {name_or_dir!r} ({type(error).__name__}: {error}); "
                        "pass a local model directory") from None


def read_model_info(model_dir):
    path = os.path.join(model_dir, INFO_NAME)
    return read_json(path) if os.path.isfile(path) else None


def bert_config_from_dir(model_dir, num_labels=None):
    from paddlenlp.transformers import BertConfig

    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{model_dir}: no config.json")
    raw = read_json(path)
    missing = [f for f in BERT_CONFIG_FIELDS if f not in raw]
    if missing:
        raise UserError(f"{path}: missing BERT fields {', '.join(missing)}")
    config = BertConfig.from_pretrained(model_dir)
    if num_labels is not None:
        config.num_labels = num_labels
    return config


def build_token_classifier(config):
    from paddlenlp.transformers import BertForTokenClassification

    model = BertForTokenClassification(config)
    sub = getattr(config, "ofa_sub_model", None)
    if sub:
        shrink_bert(model, sub["num_heads"], sub["intermediate_size"])
    return model


def load_state_checked(model, weights_path):
    """Load weights, failing with one line if names or shapes differ from the model built from config."""
    import paddle

    state = paddle.load(weights_path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"{weights_path}: weights lack {len(missing)} parameters of the config's model "
                        f"(first: {missing[0]})")
    for name, param in expected.items():
        if list(state[name].shape) != list(param.shape):
            raise UserError(f"{weights_path}: {name} has shape {list(state[name].shape)}, config implies "
                            f"{list(param.shape)}")
    model.set_state_dict({k: state[k] for k in expected})
    return model


FOREIGN_WEIGHT_SUFFIXES = (".bin", ".safetensors", ".h5", ".ckpt", ".pt", ".pth", ".msgpack", ".pdparams",
                           ".index", ".onnx")


def load_teacher_start(name_or_dir, num_labels, label_list):
    """Stage 1's starting model: a hub name, a local pretrained dir, or a config-only dir (random init)."""
    from paddlenlp.transformers import BertForTokenClassification

    id2label = dict(enumerate(label_list))
    if not os.path.isdir(name_or_dir):
        # a path (not a hub name such as "bert-base-chinese" or "org/name") that is not a directory
        if os.path.exists(name_or_dir) or name_or_dir.startswith((".", os.sep, "~")):
            raise UserError(f"--model_name_or_path {name_or_dir}: not a directory")
        try:
            model = BertForTokenClassification.from_pretrained(name_or_dir, num_labels=num_labels)
        except Exception as error:
            raise UserError(f"could not load {name_or_dir!r} ({type(error).__name__}: {error}); "
                            "pass a local model directory") from None
        return model, f"pretrained {name_or_dir}"
    info = read_model_info(name_or_dir)
    if info and info.get("kind") != "teacher":
        raise UserError(f"{name_or_dir} holds a {info.get('kind')} from a later stage; stage 1 needs a "
                        "pretrained BERT directory or a config-only one")
    config = bert_config_from_dir(name_or_dir, num_labels)
    config.id2label, config.label2id = id2label, {v: k for k, v in id2label.items()}
    if not os.path.isfile(os.path.join(name_or_dir, WEIGHTS_NAME)):
        foreign = sorted(f for f in os.listdir(name_or_dir) if f.endswith(FOREIGN_WEIGHT_SUFFIXES))
        if foreign:
            raise UserError(f"{name_or_dir}: has {', '.join(foreign)} but no {WEIGHTS_NAME}; this code reads only "
                            f"Paddle weights (convert them, e.g. with PaddleNLP's converter), or remove them to "
                            "train from random init on purpose")
        model = BertForTokenClassification(config)
        return model, f"RANDOM INIT from {name_or_dir}/config.json (no weights in the directory)"
    model = BertForTokenClassification.from_pretrained(name_or_dir, config=config)
    return model, f"pretrained weights from {name_or_dir}"


def load_model_dir(model_dir, expect_kinds):
    """Load a directory written by this project: (model, tokenizer, info). ``expect_kinds``: allowed kinds.

    Read-only: a save in progress (``DIR.tmp*``/``DIR.old*`` beside it) is left alone; only the run that owns
    the directory repairs an interrupted save, at its start (:func:`recover_interrupted_save`)."""
    if not os.path.isdir(model_dir):
        pending = interrupted_save_leftovers(model_dir)
        hint = f" ({', '.join(pending)} beside it: a save is in progress or was interrupted; retry, or re-run " \
               "the stage that writes it to recover)" if pending else ""
        raise UserError(f"{model_dir}: model directory not found{hint}")
    info = read_model_info(model_dir)
    if info is None:
        raise UserError(f"{model_dir}: no {INFO_NAME}; expected the output of "
                        f"{' or '.join(KIND_SOURCE[k] for k in expect_kinds)}")
    if info.get("kind") not in expect_kinds:
        raise UserError(f"{model_dir} holds a {info.get('kind')} ({KIND_SOURCE.get(info.get('kind'), '?')}); "
                        f"expected a {' or '.join(expect_kinds)} ({' or '.join(KIND_SOURCE[k] for k in expect_kinds)})")
    weights = os.path.join(model_dir, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise UserError(f"{model_dir}: no {WEIGHTS_NAME}")
    config = bert_config_from_dir(model_dir)
    model = load_state_checked(build_token_classifier(config), weights)
    return model, load_tokenizer(model_dir), info


def load_inference_model(model_dir):
    """(model, tokenizer, info) in eval mode, computing what the directory's scores measured: a teacher or an
    exported sub-model as saved; a supernet directory (stage 2's ``model_<width>/``) cut to the width it was
    kept for -- never the full-width network its weights also contain."""
    model, tokenizer, info = load_model_dir(model_dir, ["teacher", "supernet", "sub_model"])
    if info["kind"] == "supernet":
        config = model.bert.config
        model, _ = cut_sub_model(build_supernet(model, info["width_mult_list"]), config, info["width_mult"])
    model.eval()
    return model, tokenizer, info


KIND_SOURCE = {"teacher": "run_msra_ner.py's model_best/", "supernet": "run_msra_ner_ofa.py's model_<width>/",
               "sub_model": "export_model_msra_ner_ofa.py's --sub_model_output_dir"}


def save_model_dir(path, config, state_dict, tokenizer, info, metrics=None, args=None):
    """Write config, weights, tokenizer, model_info.json, metrics.json, args.json to a temporary
    directory, then swap it into place, so ``path`` is always either the old or the new complete model."""
    import paddle

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    config.save_pretrained(tmp)
    paddle.save({k: v for k, v in state_dict.items()}, os.path.join(tmp, WEIGHTS_NAME))
    tokenizer.save_pretrained(tmp)
    write_json(os.path.join(tmp, INFO_NAME), info)
    if metrics is not None:
        write_json(os.path.join(tmp, "metrics.json"), metrics)
    if args is not None:
        write_json(os.path.join(tmp, "args.json"), args)
    swap_into_place(tmp, path)


def swap_into_place(tmp, path):
    """Replace directory ``path`` by the complete directory ``tmp``. The only moment ``path`` is absent is
    between two renames; :func:`recover_interrupted_save` (at the owning run's next start) puts the old one back if a crash hits exactly there."""
    old = f"{path}.old{os.getpid()}"
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(tmp, path)
    if os.path.exists(old):
        shutil.rmtree(old)


def interrupted_save_leftovers(path):
    """Names of ``path.old*`` / ``path.tmp*`` siblings (what a save in progress or an interrupted one leaves)."""
    parent, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        return []
    return sorted(n for n in os.listdir(parent) if n.startswith(name + ".old") or n.startswith(name + ".tmp"))


def recover_interrupted_save(path):
    """Repair what an interrupted save of ``path`` left: restore ``path`` from ``path.old*`` if it is missing,
    delete ``path.tmp*``. This deletes files: only the run that owns ``path`` calls it, once, at its start
    (rank 0 only), never a reader."""
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    for leftover in interrupted_save_leftovers(path):
        full = os.path.join(parent, leftover)
        if leftover.startswith(name + ".old") and not os.path.exists(path):
            os.rename(full, path)
            logger.warning("restored %s from an interrupted save", path)
        elif os.path.isdir(full):
            shutil.rmtree(full)


def recover_run_outputs(output_dir, names, rank, world_size):
    """At the start of a training run, repair interrupted saves of the directories it owns
    (OUTPUT_DIR/<name> for each name, and OUTPUT_DIR/checkpoint). Rank 0 only; the others wait."""
    if rank == 0:
        for name in list(names) + [CHECKPOINT_DIR]:
            recover_interrupted_save(os.path.join(output_dir, name))
    barrier(world_size)


def check_free_space(path, parameters, copies):
    """Fail before training if the disk cannot hold ``copies`` float32 copies of the model (best models,
    checkpoint weights, optimizer moments) -- not an hour later, at the first save."""
    needed = parameters * 4 * copies
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(os.path.abspath(probe))
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise UserError(f"{path}: {free / 2**20:.0f} MiB free on disk, the run needs about {needed / 2**20:.0f} MiB")
    return free


def weights_checksum(model):
    """A short hash of all parameters (to check that data-parallel processes hold the same weights)."""
    import hashlib

    digest = hashlib.sha1()
    for name, param in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(param.numpy()).tobytes())
    return digest.hexdigest()[:16]


def check_output_dir_writable(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UserError(f"{path}: cannot create the output directory ({error.strerror})") from None
    probe = os.path.join(path, f".write_test{os.getpid()}")
    try:
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise UserError(f"{path}: not writable ({error.strerror})") from None


def make_optimizer(model_params, named_params, args, num_training_steps):
    import paddle
    from paddlenlp.transformers import LinearDecayWithWarmup

    scheduler = LinearDecayWithWarmup(args.learning_rate, num_training_steps, args.warmup_proportion)
    decay = {p.name for n, p in named_params if not any(nd in n for nd in ("bias", "norm"))}
    return paddle.optimizer.AdamW(learning_rate=scheduler, parameters=model_params,
                                  weight_decay=args.weight_decay, apply_decay_param_fun=lambda n: n in decay)


def training_sampler(args, features):
    """Length-bucketed (distributed) batches over the training windows, and the number of optimizer steps."""
    sampler = make_batch_sampler([len(ids) for ids, _ in features], args.batch_size, args.seed)
    return sampler, total_steps(args, len(sampler))


def total_steps(args, batches_per_epoch):
    if args.max_steps > 0:
        return args.max_steps
    return max(1, int(math.ceil(batches_per_epoch * args.num_train_epochs)))


def count_parameters(model):
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(output_dir, model, optimizer, trainer_state):
    """Weights, optimizer (with its LR scheduler) and the loop's state, swapped into OUTPUT_DIR/checkpoint/."""
    import paddle

    path = os.path.join(output_dir, CHECKPOINT_DIR)
    tmp = f"{path}.tmp{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
    paddle.save(_portable_optimizer_state(model, optimizer.state_dict(), to_portable=True),
                os.path.join(tmp, "optimizer.pdopt"))
    write_json(os.path.join(tmp, "trainer_state.json"), trainer_state)
    swap_into_place(tmp, path)


def _portable_optimizer_state(model, state, to_portable):
    """Optimizer state keys start with Paddle's generated parameter names (``embedding_27.w_0_moment1_0``),
    which differ between processes; store them by the parameter's position in ``model.parameters()``."""
    names = [p.name for p in model.parameters()]
    mapping = {name: f"param{i:05d}" for i, name in enumerate(names)}
    if not to_portable:
        mapping = {v: k for k, v in mapping.items()}
    ordered = sorted(mapping, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        prefix = next((name for name in ordered if key.startswith(name + "_") or key == name), None)
        if isinstance(value, dict) and key == "master_weights":
            value = {mapping.get(k, k): v for k, v in value.items()}
        out[mapping[prefix] + key[len(prefix):] if prefix else key] = value
    return out


def load_checkpoint(output_dir, model, optimizer):
    """Restore what :func:`save_checkpoint` wrote; returns the trainer state, or None if there is none."""
    import paddle

    path = os.path.join(output_dir, CHECKPOINT_DIR)
    if not os.path.isfile(os.path.join(path, "trainer_state.json")):
        return None
    model.set_state_dict(paddle.load(os.path.join(path, "model.pdparams")))
    optimizer.set_state_dict(_portable_optimizer_state(model, paddle.load(os.path.join(path, "optimizer.pdopt")),
                                                       to_portable=False))
    return read_json(os.path.join(path, "trainer_state.json"))


def train_loop(args, *, sampler, features, encoder, num_steps, optimizer, step_fn, run_dev, model, state, rank,
               world_size):
    """The training loop both stages share.

    ``step_fn(input_ids, labels) -> {name: float}`` does forward and backward; this loop steps the optimizer and
    its scheduler, logs one line per --logging_steps, and every --save_steps calls ``run_dev(step, epoch)`` and
    writes a checkpoint (``model`` weights, optimizer, step and the JSON-able ``state``). With --resume it
    continues from that checkpoint. Dropout is seeded from (seed, step), so a resumed run on the CPU repeats the
    uninterrupted one exactly."""
    import paddle

    step = 0
    if getattr(args, "resume", False):
        found = os.path.isfile(os.path.join(args.output_dir, CHECKPOINT_DIR, "trainer_state.json"))
        check_checkpoint_on_every_rank(count_on_ranks(found, world_size), world_size, args.output_dir)
        restored = load_checkpoint(args.output_dir, model, optimizer)
        if restored is None:
            logger.warning("--resume: no checkpoint in %s; starting at step 0", args.output_dir)
        else:
            step = restored["step"]
            state.update(restored["state"])
            logger.info("resumed from %s at step %d", os.path.join(args.output_dir, CHECKPOINT_DIR), step)
    per_epoch = len(sampler)
    if per_epoch == 0:
        raise UserError(f"rank {rank} of {world_size} gets no training batch: {len(features)} windows are too few "
                        f"for {world_size} processes; use fewer processes or more data")
    timer, logs, since_log = StepTimer(), {}, 0
    while step < num_steps:
        epoch_index, skip = divmod(step, per_epoch)
        sampler.set_epoch(epoch_index)
        for k, batch in enumerate(sampler):
            if k < skip:
                continue
            timer.resume()
            paddle.seed(dropout_seed(args.seed, step, rank))
            input_ids, labels = collate([features[i] for i in batch], encoder)
            for key, value in step_fn(input_ids, labels).items():
                logs.setdefault(key, []).append(value)
            optimizer.step()
            optimizer._learning_rate.step()  # the LinearDecayWithWarmup scheduler
            optimizer.clear_grad()
            step += 1
            since_log += 1
            timer.pause()
            epoch = step / per_epoch
            if step % args.logging_steps == 0 or step == num_steps:
                values = " ".join(f"{key} {np.mean(v):.4f}" for key, v in logs.items())
                logger.info("step %d/%d epoch %.2f | %s | lr %.2e | %.3f s/step", step, num_steps, epoch, values,
                            optimizer.get_lr(), timer.take() / since_log)
                logs, since_log = {}, 0
            if step % args.save_steps == 0 or step == num_steps:
                if rank == 0:
                    run_dev(step, epoch)
                    save_checkpoint(args.output_dir, model, optimizer, {"step": step, "state": state})
                barrier(world_size)
            if step >= num_steps:
                break
    if world_size > 1:  # every process says what it holds; DataParallel keeps them identical
        print(f"rank {rank}: step {step} weights checksum {weights_checksum(model)}", file=sys.stderr, flush=True)
    return step


def count_on_ranks(flag, world_size):
    """How many processes have ``flag`` true (an all-reduce; just ``int(flag)`` in a single process)."""
    if world_size == 1:
        return int(flag)
    import paddle
    import paddle.distributed as dist

    total = paddle.to_tensor([int(flag)], dtype="int64")
    dist.all_reduce(total)
    return int(total.numpy()[0])


def check_checkpoint_on_every_rank(found, world_size, output_dir):
    """--resume needs the checkpoint (written by rank 0) on every process's disk."""
    if 0 < found < world_size:
        raise UserError(f"--resume: {found} of {world_size} processes see {output_dir}/{CHECKPOINT_DIR}; rank 0 "
                        "writes it, so on several machines OUTPUT_DIR must be on a shared file system (or copy the "
                        "checkpoint directory to every machine first)")


def dropout_seed(seed, step, rank):
    """The seed set before each step: repeatable for --resume, different on each rank (so data-parallel
    processes draw different dropout masks, as independent batches should)."""
    return seed * 1000003 + step + rank * (1 << 32)


def clock():
    return time.perf_counter()


class StepTimer:
    """Time spent in training steps only (between ``resume()`` and ``pause()``); evaluation and checkpoints
    between steps are not counted."""

    def __init__(self):
        self.total, self.since = 0.0, None

    def resume(self):
        self.since = clock()

    def pause(self):
        self.total += clock() - self.since
        self.since = None

    def take(self):
        """Step seconds accumulated since the last take()."""
        total, self.total = self.total, 0.0
        return total


# --------------------------------------------------------------------------- width supernet


def encoder_layers(model):
    layers = model._layers if hasattr(model, "_layers") else model
    return layers.bert.encoder.layers


def kept_heads(width, num_heads):
    return max(1, int(round(width * num_heads)))


def kept_neurons(width, intermediate_size):
    return max(1, int(round(width * intermediate_size)))


def shrink_bert(model, num_heads, intermediate_size):
    """Replace each layer's q/k/v/out and FFN Linears with ones of ``num_heads`` heads and
    ``intermediate_size`` neurons (a width sub-model); weights are then loaded by the caller."""
    import paddle.nn as nn

    for layer in encoder_layers(model):
        attn = layer.self_attn
        hidden, inner = attn.embed_dim, num_heads * attn.head_dim
        attn.q_proj, attn.k_proj, attn.v_proj = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        attn.out_proj = nn.Linear(inner, hidden)
        attn.num_heads = num_heads
        layer.linear1 = nn.Linear(hidden, intermediate_size)
        layer.linear2 = nn.Linear(intermediate_size, hidden)
    return model


def compute_head_neuron_importance(model, batches):
    """DynaBERT importance, per layer: heads [L, H] and FFN neurons [L, I], accumulated over ``batches``
    (lists of (input_ids, labels) numpy arrays) of the task loss.

    Head h's importance is |dL/dm_h| for a mask m_h on its context vectors; since the attention output is
    ``ctx @ W_o``, that gradient equals ``sum(W_o[h rows] * dL/dW_o[h rows])`` -- so no head-mask hook into
    MultiHeadAttention is needed. A neuron's importance is |sum(w1 * dL/dw1) + b1 * dL/db1| (PaddleSlim's)."""
    import paddle
    import paddle.nn.functional as F

    layers = encoder_layers(model)
    num_heads = layers[0].self_attn.num_heads
    head_dim = layers[0].self_attn.head_dim
    heads = np.zeros((len(layers), num_heads))
    neurons = np.zeros((len(layers), layers[0].linear1.weight.shape[1]))
    model.eval()
    for input_ids, labels in batches:
        logits = model(paddle.to_tensor(input_ids))
        loss = F.cross_entropy(logits, paddle.to_tensor(labels), ignore_index=IGNORE_INDEX)
        loss.backward()
        for i, layer in enumerate(layers):
            w_o, g_o = layer.self_attn.out_proj.weight.numpy(), layer.self_attn.out_proj.weight.grad.numpy()
            heads[i] += np.abs((w_o * g_o).reshape(num_heads, head_dim, -1).sum(axis=(1, 2)))
            w1, b1 = layer.linear1.weight, layer.linear1.bias
            neurons[i] += np.abs((w1.numpy() * w1.grad.numpy()).sum(axis=0) + b1.numpy() * b1.grad.numpy())
        model.clear_gradients()
    return heads, neurons


def reorder_heads_neurons(model, head_importance, neuron_importance):
    """Permute heads and FFN neurons so the most important come first (what a width sub-model keeps).
    The function computed by the model does not change."""
    import paddle

    def take(param, index, axis):
        param.set_value(paddle.index_select(param, paddle.to_tensor(index), axis=axis))

    for i, layer in enumerate(encoder_layers(model)):
        attn = layer.self_attn
        order = np.argsort(-head_importance[i], kind="stable")
        index = np.concatenate([np.arange(h * attn.head_dim, (h + 1) * attn.head_dim) for h in order]).astype("int64")
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            take(proj.weight, index, 1)
            take(proj.bias, index, 0)
        take(attn.out_proj.weight, index, 0)
        n_order = np.argsort(-neuron_importance[i], kind="stable").astype("int64")
        take(layer.linear1.weight, n_order, 1)
        take(layer.linear1.bias, n_order, 0)
        take(layer.linear2.weight, n_order, 0)


def validate_width_list(widths):
    if not widths:
        raise UserError("--width_mult_list is empty")
    bad = [w for w in widths if not 0.0 < w <= 1.0]
    if bad:
        raise UserError(f"--width_mult_list: widths must be in (0, 1], got {bad}")
    if 1.0 not in widths:
        raise UserError(f"--width_mult_list must contain 1.0 (the full width), got {widths}")
    if len(set(widths)) != len(widths):
        raise UserError(f"--width_mult_list has duplicates: {widths}")
    return sorted(widths, reverse=True)


def build_supernet(model, width_mult_list, data_parallel=False):
    """Convert a (reordered) BERT token classifier into a PaddleSlim OFA width supernet, keeping its weights.

    The encoder's Linear/LayerNorm layers become PaddleSlim super layers (in place); the returned ``OFA``
    wraps the whole model and routes the per-width config (:func:`set_supernet_width`) to them. With
    ``data_parallel`` the converted model is wrapped in ``paddle.DataParallel`` inside the OFA."""
    from paddleslim.nas.ofa import OFA
    from paddleslim.nas.ofa.convert_super import Convert, supernet
    from paddleslim.nas.ofa.utils import set_state_dict

    from paddleslim_compat import apply_paddleslim_fixes

    apply_paddleslim_fixes()
    for layer in encoder_layers(model):
        layer.self_attn.full_num_heads = layer.self_attn.num_heads
    state = model.state_dict()
    # Only the encoder is elastic: embeddings, pooler and classifier stay plain Paddle layers.
    Convert(supernet(expand_ratio=sorted(width_mult_list))).convert(model.bert.encoder)
    set_state_dict(model, state)
    if data_parallel:  # after Convert, so that DataParallel all-reduces the super layers' parameters
        import paddle

        model = paddle.DataParallel(model)
    return OFA(model)


_ELASTIC_ATTN = re.compile(r"encoder\.layers\.\d+\.self_attn\.[qkv]_proj$")
_ELASTIC_FFN = re.compile(r"encoder\.layers\.\d+\.linear1$")


def set_supernet_width(ofa_model, width):
    """Run the supernet at ``width``: q/k/v keep round(width*heads) whole heads, linear1 keeps
    round(width*intermediate) neurons; everything else at full size. Returns (heads, neurons) kept."""
    layers = encoder_layers(ofa_model.model)
    attn = layers[0].self_attn
    heads = kept_heads(width, attn.full_num_heads)
    intermediate = layers[0].linear1.fn.weight.shape[1]
    neurons = kept_neurons(width, intermediate)
    config = {}
    for name in ofa_model._ofa_layers:
        if _ELASTIC_ATTN.search(name):
            config[name] = {"channel": heads * attn.head_dim}
        elif _ELASTIC_FFN.search(name):
            config[name] = {"channel": neurons}
        else:
            config[name] = {}
    ofa_model.set_net_config(config)
    for layer in layers:
        layer.self_attn.num_heads = heads  # stock MultiHeadAttention reshapes q/k/v with num_heads
    return heads, neurons


def supernet_state_dict(ofa_model):
    """The supernet's weights under the plain model's parameter names (PaddleSlim's Block adds '.fn.')."""
    model = ofa_model.model._layers if hasattr(ofa_model.model, "_layers") else ofa_model.model
    return {name.replace(".fn.", "."): param for name, param in model.state_dict().items()}


def load_supernet_weights(ofa_model, state_dict):
    from paddleslim.nas.ofa.utils import set_state_dict

    model = ofa_model.model._layers if hasattr(ofa_model.model, "_layers") else ofa_model.model
    set_state_dict(model, state_dict)


def cut_sub_model(ofa_model, config, width):
    """The plain (pruned) BERT of ``width``: PaddleSlim records the slice each super layer used at that
    width (``cur_config['prune_dim']``); those slices of the supernet's weights fill a BERT whose q/k/v/out
    and FFN Linears are built at the kept size. Returns (model, sub_config)."""
    import copy

    import paddle

    heads, neurons = set_supernet_width(ofa_model, width)
    ofa_model.model.eval()
    with paddle.no_grad():
        ofa_model(paddle.to_tensor(np.array([[1, 2, 3]], dtype="int64")))
    pruned, _ = ofa_model._get_model_pruned_weight()
    state = {k: v.numpy() for k, v in supernet_state_dict(ofa_model).items()}
    state.update({name.replace(".fn.", "."): value for name, value in pruned.items()})
    sub_config = copy.deepcopy(config)
    sub_config.ofa_sub_model = {"width_mult": width, "num_heads": heads, "intermediate_size": neurons}
    sub_model = build_token_classifier(sub_config)
    sub_model.set_state_dict({k: paddle.to_tensor(state[k]) for k in sub_model.state_dict()})
    for name, param in sub_model.state_dict().items():
        if list(param.shape) != list(state[name].shape):
            raise RuntimeError(f"cut sub-model: {name} {param.shape} vs {state[name].shape}")
    sub_model.eval()
    return sub_model, sub_config


# --------------------------------------------------------------------------- Paddle Inference


def static_paths(prefix):
    return prefix + ".json", prefix + ".pdiparams"


def save_static(model, prefix):
    """Save a dygraph token classifier as a static graph with dynamic batch and sequence length."""
    import paddle
    from paddle.static import InputSpec

    model.eval()
    static = paddle.jit.to_static(model, input_spec=[InputSpec(shape=[None, None], dtype="int64", name="input_ids")])
    paddle.jit.save(static, prefix)
    return static_paths(prefix)


def static_logits_fn(prefix, device="cpu", threads=2, mkldnn=False):
    """Paddle Inference predictor for ``prefix.json``/``prefix.pdiparams``, as numpy in → numpy logits out."""
    import paddle.inference as paddle_infer

    model_file, params_file = static_paths(prefix)
    for path in (model_file, params_file):
        if not os.path.isfile(path):
            raise UserError(f"{path}: static model file not found")
    config = paddle_infer.Config(model_file, params_file)
    if device == "gpu":
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if mkldnn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
    config.disable_glog_info()
    predictor = paddle_infer.create_predictor(config)
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(input_ids):
        input_handle.reshape(list(input_ids.shape))
        input_handle.copy_from_cpu(np.ascontiguousarray(input_ids, dtype="int64"))
        predictor.run()
        return output_handle.copy_to_cpu()

    return run


def describe_args(args):
    return " ".join(f"{k}={v}" for k, v in args_to_dict(args).items())



# --------------------------------------------------------------------------- ONNX Runtime (INT8)


def export_onnx(prefix, onnx_path, opset=17):
    """Convert a static Paddle model (PREFIX.json/.pdiparams) to ONNX with paddle2onnx.

    Opset 17 has a native LayerNormalization (opset 14 spells it out in ~8 elementwise ops per norm).

    ``optimize_tool="onnxoptimizer"``: paddle2onnx's default (Polygraphy) sets POLYGRAPHY_AUTOINSTALL_DEPS=1 and
    pip-installs onnx-graphsurgeon at run time, which pulls NumPy 2 into this NumPy-1 stack. ONNX Runtime does
    the constant folding itself when it loads the model."""
    import paddle2onnx

    model_file, params_file = static_paths(prefix)
    paddle2onnx.export(model_file, params_file, onnx_path, opset_version=opset, enable_onnx_checker=True,
                       optimize_tool="onnxoptimizer")
    constants_to_initializers(onnx_path)
    return onnx_path


def constants_to_initializers(onnx_path):
    """paddle2onnx 2.1 emits the weights as ``Constant`` nodes; ONNX Runtime's quantizer only quantizes a MatMul
    whose weight is an *initializer* (else: "Ignore MatMul due to non constant B" and nothing becomes INT8).
    Move every Constant's tensor into the initializers, in place. Returns how many were moved."""
    import onnx

    model = onnx.load(onnx_path)
    graph, kept, moved = model.graph, [], 0
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, onnx_path)
    return moved


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_reduce_range(machine=None, flags=None):
    """Whether ONNX Runtime's dynamic INT8 should quantize weights to 7 bits (``reduce_range``).

    On x86 without VNNI, the u8 x s8 multiply (vpmaddubsw) adds pairs of products into int16 and can saturate
    with full-range 8-bit weights; 7-bit weights cannot overflow there. CPUs with AVX-512 VNNI or AVX-VNNI
    (and non-x86 CPUs) accumulate in int32, so full range is safe and more accurate."""
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    flags = cpu_flags() if flags is None else set(flags)
    return not ({"avx512_vnni", "avx_vnni", "avx512vnni"} & flags)


def quantize_onnx(fp32_path, int8_path, reduce_range=None):
    """ONNX Runtime dynamic quantization: INT8 weights (per channel) for MatMul, activations quantized on the fly.
    ``reduce_range`` None: chosen for this CPU (:func:`int8_reduce_range`). Returns the reduce_range used."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if reduce_range is None:
        reduce_range = int8_reduce_range()

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # the quantizer logs one INFO line per tensor
    try:
        quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul"])
    finally:
        root.setLevel(level)
    return reduce_range


def onnx_logits_fn(path, threads=2):
    """ONNX Runtime CPU session as numpy in → numpy logits out."""
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise UserError(f"{path}: ONNX model not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # no warnings about unused initializers from paddle2onnx
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(input_ids):
        return session.run(None, {name: np.ascontiguousarray(input_ids, dtype="int64")})[0]

    return run
