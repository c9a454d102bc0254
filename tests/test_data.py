"""Reading data, labels, splits, character alignment, windows."""

import pytest
from conftest import fake_tokenizer

from ner_ofa.data import dev_sample, load_splits, read_ner_file, read_unlabeled_file, split_dev
from ner_ofa.features import (CharEncoder, IGNORE_INDEX, collate, make_windows, train_features, unlabeled_features,
                              window_owner)
from ner_ofa.cli import UserError

SEP = "\x02"


def write(path, lines, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as handle:
        handle.write("\n".join(lines) + "\n")
    return str(path)


def line(chars, labels):
    return SEP.join(chars) + "\t" + SEP.join(labels)


def test_read_ner_file(tmp_path):
    path = write(tmp_path / "a.tsv", [line("张三来了", ["B-PER", "I-PER", "O", "O"]), "", line("好", ["O"])])
    examples = read_ner_file(path)
    assert [e["chars"] for e in examples] == [list("张三来了"), ["好"]]
    assert examples[1]["where"].endswith(":3")


@pytest.mark.parametrize("lines, message", [
    ([line("张三", ["B-PER", "I-PER"]), line("来了", ["O"])], r"a\.tsv:2: 2 characters but 1 labels"),
    (["张三 B-PER"], r"a\.tsv:1: no TAB"),
    ([line("张三", ["X-PER", "O"])], r"a\.tsv:1: label 'X-PER' is not O or B-/I-/E-/S-/M-"),
    ([line("张三", ["I-", "O"])], r"'I-' is not O or B-/I-"),
    (["\tO"], r"a\.tsv:1: empty sentence"),
    ([""], r"no sentences \(empty file\)"),
])
def test_read_ner_file_errors(tmp_path, lines, message):
    path = write(tmp_path / "a.tsv", lines)
    with pytest.raises(UserError, match=message):
        read_ner_file(path)


def test_missing_and_not_utf8(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_ner_file(str(tmp_path / "none.tsv"))
    path = tmp_path / "gbk.tsv"
    path.write_bytes(line("张三", ["B-PER", "I-PER"]).encode("gbk"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_ner_file(str(path))


def test_labels_from_data_and_unknown_test_label(tmp_path):
    write(tmp_path / "train.tsv", [line("张三在京", ["B-PER", "I-PER", "O", "B-LOC"]), line("好的", ["O", "O"]),
                                   line("好啊", ["O", "O"])])
    write(tmp_path / "test.tsv", [line("华为", ["B-ORG", "I-ORG"])])

    class Args:
        data_dir, dev_ratio, seed = str(tmp_path), 0.34, 0

    with pytest.raises(UserError, match=r"test\.tsv:1: label 'B-ORG' in test is not in the label set"):
        load_splits(Args)
    write(tmp_path / "test.tsv", [line("在京", ["O", "I-LOC"])])  # I- of a known type is fine
    data = load_splits(Args)
    assert data["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert len(data["dev"]) == 1 and len(data["train"]) == 2
    assert data["dev"] == load_splits(Args)["dev"]  # seeded
    # labels.txt decides the label set and its order
    write(tmp_path / "labels.txt", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"])
    write(tmp_path / "test.tsv", [line("华为", ["B-ORG", "I-ORG"])])
    assert load_splits(Args)["labels"][:3] == ["O", "B-PER", "I-PER"]


def test_own_dev_file_used(tmp_path):
    write(tmp_path / "train.tsv", [line("张三", ["B-PER", "I-PER"])])
    write(tmp_path / "dev.tsv", [line("李四", ["B-PER", "I-PER"]), line("好", ["O"])])
    write(tmp_path / "test.tsv", [line("王五", ["B-PER", "I-PER"])])

    class Args:
        data_dir, dev_ratio, seed = str(tmp_path), 0.1, 0

    data = load_splits(Args)
    assert data["dev_source"] == "dev.tsv" and len(data["dev"]) == 2 and len(data["train"]) == 1


FakeTokenizer = fake_tokenizer("张", "三", "a", "1")


def test_char_encoder_one_id_per_character():
    enc = CharEncoder(FakeTokenizer)
    chars = list("张三 A1？") + [""]
    ids = enc.encode(chars)
    assert len(ids) == len(chars)
    assert ids == [5, 6, 1, 7, 8, 1, 1]  # space, unknown and empty token -> [UNK]; 'A' lower-cased


def test_collate_aligns_labels_with_cls_sep_and_padding():
    enc = CharEncoder(FakeTokenizer)
    input_ids, labels = collate([([5, 6], [1, 2]), ([5], [0])], enc)
    assert input_ids.tolist() == [[2, 5, 6, 3], [2, 5, 3, 0]]
    ig = IGNORE_INDEX
    assert labels.tolist() == [[ig, 1, 2, ig], [ig, 0, ig, ig]]


def test_train_features_split_long_sentences_without_loss():
    enc = CharEncoder(FakeTokenizer)
    ex = {"chars": list("张三") * 7, "labels": ["B-PER", "I-PER"] * 7}
    feats = train_features([ex], enc, {"O": 0, "B-PER": 1, "I-PER": 2}, max_seq_length=7)
    assert [len(ids) for ids, _ in feats] == [5, 5, 4]
    assert sum((labels for _, labels in feats), []) == [1, 2] * 7


def test_unlabeled_file_skips_blank_lines_and_drops_dev_and_test_sentences(tmp_path):
    held_out = [{"chars": list("王五在北京"), "labels": ["O"] * 5}, {"chars": list("李四"), "labels": ["O"] * 2}]
    path = tmp_path / "extra.txt"
    path.write_bytes("张三来了\r\n\n王五在北京\n  \n李四\n李四在\n".encode("utf-8"))
    sentences, dropped = read_unlabeled_file(str(path), held_out)
    assert sentences == [list("张三来了"), list("李四在")] and dropped == 2
    path.write_text("李四\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no sentence in it"):
        read_unlabeled_file(str(path), held_out)
    with pytest.raises(UserError, match="data file not found"):
        read_unlabeled_file(str(tmp_path / "missing.txt"))


def test_unlabeled_windows_mark_every_character_for_distillation():
    """Stage 2's loss reads only the characters the labels mark (labels != IGNORE_INDEX): an unlabelled window
    must mark every character of its sentence, split as train windows are, and nothing else."""
    enc = CharEncoder(FakeTokenizer)
    feats = unlabeled_features([list("张三") * 7, list("三")], enc, max_seq_length=7)
    assert [len(ids) for ids, _ in feats] == [5, 5, 4, 1]
    assert sum((ids for ids, _ in feats[:3]), []) == enc.encode(list("张三") * 7)
    _, labels = collate(feats, enc)
    assert ((labels != IGNORE_INDEX).sum(axis=1)).tolist() == [5, 5, 4, 1]
    assert (labels[:, 0] == IGNORE_INDEX).all()


@pytest.mark.parametrize("length, size", [(1, 5), (5, 5), (6, 5), (23, 5), (100, 16), (7, 1)])
def test_windows_cover_every_position(length, size):
    windows = make_windows(length, size)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(end - start <= size for start, end in windows)
    owner = window_owner(length, windows)
    assert (owner >= 0).all()
    for i, w in enumerate(owner):
        assert windows[w][0] <= i < windows[w][1]


@pytest.mark.parametrize("length, size, expected", [
    (126, 126, [(0, 126)]),
    (190, 126, [(0, 126), (64, 190)]),                  # was (0, 126), (63, 189), (64, 190)
    (127, 126, [(0, 95), (32, 127)]),                   # was (0, 126), (1, 127)
    (220, 126, [(0, 126), (94, 220)]),                  # the least overlap: about a quarter of a window
    (221, 126, [(0, 116), (52, 168), (105, 221)]),
    (253, 126, [(0, 126), (63, 189), (127, 253)]),      # was (0, 126), (63, 189), (126, 252), (127, 253)
    (30, 10, [(0, 10), (5, 15), (10, 20), (15, 25), (20, 30)]),
])
def test_windows_exactly(length, size, expected):
    assert make_windows(length, size) == expected


def test_no_window_nearly_repeats_another_and_every_character_has_context():
    for size in (5, 14, 46, 126):
        for length in range(size + 1, 6 * size):
            windows = make_windows(length, size)
            starts = [start for start, _ in windows]
            assert min(b - a for a, b in zip(starts, starts[1:])) >= size // 4, (length, size, windows)
            owner = window_owner(length, windows)
            margin = [min(i - windows[w][0], windows[w][1] - 1 - i) for i, w in enumerate(owner)]
            # away from the text's own ends, a character is never near the edge of the window it is taken from
            assert min(margin[size // 2:length - size // 2]) >= size // 8, (length, size, windows)


def test_split_dev_too_small():
    with pytest.raises(UserError, match="too few"):
        split_dev([{"chars": ["a"]}], 0.5, 0)


def test_dev_sample_is_a_fixed_seeded_sample_in_dev_order():
    dev = [{"chars": [str(i)], "labels": ["O"]} for i in range(100)]
    sample = dev_sample(dev, 30, 42)
    assert len(sample) == 30 and sample == dev_sample(dev, 30, 42)  # the same at every evaluation
    assert [dev.index(ex) for ex in sample] == sorted(dev.index(ex) for ex in sample)
    assert sample != dev_sample(dev, 30, 43) and sample != dev[:30]
    for all_of_dev in (0, 100, 500):
        assert dev_sample(dev, all_of_dev, 42) is dev
