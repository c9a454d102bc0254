"""The labelled data the stages train and score on: reading and writing data files, label sets, the dev
split, PaddleNLP's ``msra_ner``, and the checks that stage 2 uses the teacher's data."""
import hashlib
import json
import os
import random
import re

from ner_ofa.errors import UserError, logger
from ner_ofa.formats import TOKEN_SEP, read_data_file, read_text


_LABEL_RE = re.compile(r"^[BI]-\S+$")


def check_label(label, where):
    if label != "O" and not _LABEL_RE.match(label):
        raise UserError(f"{where}: label {label!r} is not BIO (O, B-TYPE or I-TYPE)")


def read_ner_file(path, data_format="auto"):
    """Read a data file in any layout of ner_ofa/formats.py into a list of {'chars', 'labels' (BIO), 'where'}
    examples; its layout and label scheme are logged."""
    examples, layout, scheme = read_data_file(path, data_format)
    logger.info("%s: %d sentences, %s layout, %s labels%s", path, len(examples), layout, scheme,
                "" if scheme == "BIO" else " (converted to BIO)")
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


SPLIT_FILE_EXCLUDE = ("labels.txt",)


def find_split_file(args, split):
    """The file of ``split`` ("train", "dev", "test"): --SPLIT_file, else the one ``SPLIT.*`` in --data_dir (train.tsv,
    train.char.bmes, train.json ...); None for a missing dev or test."""
    named = getattr(args, f"{split}_file", None)
    if named:
        if not os.path.isfile(named):
            raise UserError(f"--{split}_file {named}: not a file")
        return named
    if not args.data_dir:
        if split == "dev":
            return None
        raise UserError(f"--{split}_file is needed when --data_dir is not given")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data_dir {args.data_dir}: not a directory")
    found = sorted(name for name in os.listdir(args.data_dir)
                   if name.startswith(split + ".") and os.path.isfile(os.path.join(args.data_dir, name)))
    if len(found) > 1:
        raise UserError(f"--data_dir {args.data_dir}: {len(found)} {split} files ({', '.join(found)}); name one with "
                        f"--{split}_file")
    if not found:
        if split == "train":
            raise UserError(f"{os.path.join(args.data_dir, 'train.tsv')}: data file not found (no train.* in "
                            "--data_dir; or give --train_file)")
        return None
    return os.path.join(args.data_dir, found[0])


def split_dev(train, dev_ratio, seed):
    """A seeded dev split carved from train; returns (train, dev)."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(len(train) * dev_ratio)))
    if n_dev >= len(train):
        raise UserError(f"train has {len(train)} sentences: too few to hold out --dev_ratio {dev_ratio} as dev")
    dev_ids = set(order[:n_dev])
    return [ex for i, ex in enumerate(train) if i not in dev_ids], [ex for i, ex in enumerate(train) if i in dev_ids]


def dev_sample(dev, sentences, seed):
    """What a training stage's dev evaluations (the choice of the best step) score: all of dev when ``sentences``
    is 0 or not below its size, else a fixed sample of ``sentences`` of its sentences drawn with ``seed`` (the
    same at every evaluation and on every process), in dev's order."""
    if sentences <= 0 or sentences >= len(dev):
        return dev
    keep = sorted(random.Random(f"dev sample {seed}").sample(range(len(dev)), sentences))
    return [dev[i] for i in keep]


def load_splits(args, label_list=None):
    """Return {'train', 'dev', 'test', 'labels', 'dev_source'}.

    Labels come from ``label_list`` (a trained model's), else ``labels.txt`` in --data_dir, else the
    training data. Dev is the data's own dev split if present, else a seeded --dev_ratio of train."""
    dev_path = None
    if args.data_dir or getattr(args, "train_file", None):
        data_format = getattr(args, "data_format", "auto")
        train_path, dev_path, test_path = (find_split_file(args, split) for split in ("train", "dev", "test"))
        if test_path is None:
            raise UserError(f"{os.path.join(args.data_dir or '.', 'test.tsv')}: data file not found (no test.* in "
                            "--data_dir; or give --test_file)")
        train = read_ner_file(train_path, data_format)
        dev = read_ner_file(dev_path, data_format) if dev_path else None
        test = read_ner_file(test_path, data_format)
        labels_path = os.path.join(args.data_dir, "labels.txt") if args.data_dir else None
        file_labels = read_label_file(labels_path) if labels_path and os.path.exists(labels_path) else None
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
        dev_split = {"from": "dev.tsv"}  # "the data's own dev file", whatever its name
        dev_source = os.path.basename(dev_path) if dev_path else "dev"
        check_labels_known(dev, label_list, "dev")
    check_labels_known(test, label_list, "test")
    return {"train": train, "dev": dev, "test": test, "labels": list(label_list), "dev_source": dev_source,
            "dev_split": dev_split}


def read_unlabeled_file(path, held_out=()):
    """Stage 2's --unlabeled_file: UTF-8 text, one sentence a line (what predict.py labels). Blank lines are
    skipped, and a line that is a sentence of ``held_out`` (dev, test) is dropped: training on it would make its
    scores look better than they are. Returns (sentences as character lists, lines dropped)."""
    held_out = {"".join(ex["chars"]) for ex in held_out}
    sentences, dropped = [], 0
    for line in read_text(path).split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if line in held_out:
            dropped += 1
        else:
            sentences.append(list(line))
    if not sentences:
        raise UserError(f"--unlabeled_file {path}: no sentence in it (one a line, not a dev or test sentence)")
    return sentences, dropped


def describe_splits(data, data_dir, eval_sentences=0):
    """One log line: sentences per split, where dev came from (and how many of it the dev evaluations score),
    where the data came from."""
    sample = f", {eval_sentences} of them scored at each evaluation" if 0 < eval_sentences < len(data["dev"]) else ""
    return (f"train {len(data['train'])}, dev {len(data['dev'])} ({data['dev_source']}{sample}), test "
            f"{len(data['test'])} sentences | {data_dir or 'PaddleNLP msra_ner'}")


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
