"""The data layouts and label schemes of ner_ofa/formats.py: each gives the same sentences and entities as the MSRA
layout of the same data; files that read like another layout are refused in one line naming file and line."""
import json
import os

import pytest
from conftest import SHARED, teacher_args

import run_msra_ner
from ner_ofa import formats, model_io
from ner_ofa.data import load_splits, read_ner_file, write_ner_file
from ner_ofa.errors import UserError
from ner_ofa.labelling import spans_from_labels

# hand-made sentences (not MSRA's): BIO labels
SENTENCES = [
    (list("张伟在北京大学工作"), ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]),
    (list("李娜去上海"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
    (list("王去京沪"), ["B-PER", "O", "B-LOC", "B-LOC"]),  # a one-character entity; two adjacent of one type
    (list("好"), ["O"]),
]


def spans(chars_labels):
    return [(tuple(chars), tuple(spans_from_labels(labels))) for chars, labels in chars_labels]


def as_scheme(labels, scheme):
    """BIO labels written in ``scheme``."""
    out = []
    for i, label in enumerate(labels):
        nxt = labels[i + 1] if i + 1 < len(labels) else "O"
        if label == "O":
            out.append("O")
            continue
        prefix, t = label[0], label[2:]
        ends = nxt != f"I-{t}"
        if scheme == "BIOES":
            out.append(("S-" if ends else "B-") + t if prefix == "B" else ("E-" if ends else "I-") + t)
        elif scheme == "BMES":
            out.append(("S-" if ends else "B-") + t if prefix == "B" else ("E-" if ends else "M-") + t)
        elif scheme == "IOB1":
            prev = labels[i - 1] if i else "O"
            out.append(("B-" if prefix == "B" and prev[2:] == t else "I-") + t)
        else:
            out.append(label)
    return out


def write_conll(path, sentences, sep="\t"):
    with open(path, "w", encoding="utf-8") as handle:
        for chars, labels in sentences:
            handle.write("".join(f"{c}{sep}{label}\n" for c, label in zip(chars, labels)) + "\n")


def write_jsonl(path, sentences):
    with open(path, "w", encoding="utf-8") as handle:
        for chars, labels in sentences:
            text, label = "".join(chars), {}
            for t, s, e in spans_from_labels(labels):
                label.setdefault(t, {}).setdefault(text[s:e], []).append([s, e - 1])
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def read(path, data_format="auto"):
    return [(ex["chars"], ex["labels"]) for ex in formats.read_data_file(str(path), data_format)[0]]


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "BIOES", "BMES"])
@pytest.mark.parametrize("sep", ["\t", " "])
def test_conll_in_every_scheme_reads_as_the_msra_layout(tmp_path, scheme, sep):
    write_ner_file(str(tmp_path / "msra.tsv"), [{"chars": c, "labels": l} for c, l in SENTENCES])
    write_conll(tmp_path / "train.char.bmes", [(c, as_scheme(l, scheme)) for c, l in SENTENCES], sep)
    examples, layout, found = formats.read_data_file(str(tmp_path / "train.char.bmes"))
    assert (layout, found) == ("conll", scheme)
    assert read(tmp_path / "train.char.bmes") == read(tmp_path / "msra.tsv") == [(c, l) for c, l in SENTENCES]
    assert spans(read(tmp_path / "train.char.bmes")) == spans(SENTENCES)


def test_cluener_json_lines_read_as_the_msra_layout(tmp_path):
    write_jsonl(tmp_path / "train.json", SENTENCES)
    assert formats.read_data_file(str(tmp_path / "train.json"))[1:] == ("jsonl", "BIO")
    assert read(tmp_path / "train.json") == [(c, l) for c, l in SENTENCES]


def test_the_old_silent_misread_is_refused(tmp_path):
    """A CoNLL file read as MSRA layout was one-character sentences; now a one-line error naming file and line."""
    write_conll(tmp_path / "train.txt", SENTENCES)
    with pytest.raises(UserError, match=r"train\.txt:1: every sentence is one character long"):
        read(tmp_path / "train.txt", "msra")
    assert formats.read_data_file(str(tmp_path / "train.txt"))[1] == "conll"  # auto detects it


def test_conll_lines_inside_an_msra_file_are_refused(tmp_path):
    path = tmp_path / "train.tsv"
    write_ner_file(str(path), [{"chars": c, "labels": l} for c, l in SENTENCES[:2]])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("北\tB-LOC\n京\tI-LOC\n")
    with pytest.raises(UserError, match=r"train\.tsv:3: one character and its label on consecutive lines"):
        read(path)


@pytest.mark.parametrize("content, message", [
    ("北京\tB-LOC\n", r"bad\.txt:1: token '北京' is 2 characters"),
    ("北\n", r"bad\.txt:1: no TAB between the characters and the labels"),
    ("北\tX-LOC\n", r"bad\.txt:1: label 'X-LOC' is not O or B-/I-/E-/S-/M-"),
    ('{"text": "北京", "label": {"LOC": {"北京": [[0, 0]]}}}\n', r"bad\.txt:1: span \[0, 0\] of LOC is not '北京'"),
    ('{"text": "北京"}\n', r'bad\.txt:1: no "label" object'),
])
def test_bad_files_one_line_naming_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.txt").write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read(tmp_path / "bad.txt")


def test_data_dir_finds_split_files_and_refuses_two(tmp_path):
    write_conll(tmp_path / "train.char.bmes", SENTENCES)
    write_conll(tmp_path / "test.char.bmes", SENTENCES[:2])
    args = type("A", (), {"data_dir": str(tmp_path), "dev_ratio": 0.25, "seed": 1})
    data = load_splits(args)
    assert (len(data["train"]) + len(data["dev"]), len(data["test"])) == (4, 2)
    write_jsonl(tmp_path / "train.json", SENTENCES)
    with pytest.raises(UserError, match=r"2 train files \(train\.char\.bmes, train\.json\); name one with --train_file"):
        load_splits(args)
    args.train_file = str(tmp_path / "train.json")
    assert len(load_splits(args)["test"]) == 2


def test_resume_style_bmes_trains_stage_one(tiny_demo, tmp_path):
    """Resume's layout: train/dev/test.char.bmes, "char label" with a space, BMES tags; stage 1 reads the right
    sentence count and entity types."""
    data = tmp_path / "resume"
    data.mkdir()
    counts = {}
    for split in ("train", "dev", "test"):
        examples = read_ner_file(os.path.join(tiny_demo["data_dir"], f"{split}.tsv"))
        counts[split] = len(examples)
        write_conll(data / f"{split}.char.bmes", [(ex["chars"], as_scheme(ex["labels"], "BMES")) for ex in examples],
                    " ")
    out = tmp_path / "teacher"
    run_msra_ner.main(teacher_args(str(data), tiny_demo["model_dir"], str(out), "--max_steps", "2"))
    info = model_io.read_model_info(str(out / "model_best"))
    demo_types = {label[2:] for ex in read_ner_file(os.path.join(tiny_demo["data_dir"], "train.tsv"))
                  for label in ex["labels"] if label != "O"}
    assert {label[2:] for label in info["labels"] if label != "O"} == demo_types
    assert info["data"]["train_sentences"] == counts["train"] and info["data"]["dev_sentences"] == counts["dev"]
    metrics = model_io.read_json(str(out / "model_best" / "metrics.json"))
    assert metrics["test"]["sentences"] == counts["test"]


MSRA_TEST = os.path.join(SHARED, "data", "msra_ner", "test.tsv")


@pytest.mark.skipif(not os.path.isfile(MSRA_TEST), reason="needs ../shared/data/msra_ner/test.tsv")
def test_real_msra_test_split_in_conll_and_bmes_reads_the_same(tmp_path):
    examples = read_ner_file(MSRA_TEST)
    sentences = [(ex["chars"], ex["labels"]) for ex in examples]
    write_conll(tmp_path / "test.char.bmes", [(c, as_scheme(l, "BMES")) for c, l in sentences], " ")
    got = read(tmp_path / "test.char.bmes")
    assert len(got) == len(sentences) == 3442
    assert spans(got) == spans(sentences)
