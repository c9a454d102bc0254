"""NER data files in the layouts users have, read into BIO examples: MSRA's U+0002 layout, CoNLL columns (one
character and its label a line, a blank line between sentences: Resume, Weibo, People's Daily), JSON lines of spans
(CLUENER); label schemes BIO, IOB1, BIOES/IOBES and BMES converted to BIO. The layout and the scheme are read from
the content (or forced), and a file that parses in one layout but reads like another is refused."""
import json
import os
import re

from ner_ofa.errors import UserError

TOKEN_SEP = "\x02"
LAYOUTS = ("msra", "conll", "jsonl")
_TAG_RE = re.compile(r"^(O|[BIESM]-\S+)$")


def read_text(path):
    if not os.path.isfile(path):
        raise UserError(f"{path}: data file not found")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None


def detect_layout(text):
    """'jsonl' if the first non-blank line is a JSON object; 'conll' if no line holds U+0002 and every non-blank
    line is one character, then its label (more columns allowed); else 'msra' (whose reader says what is wrong)."""
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and lines[0].lstrip().startswith("{"):
        return "jsonl"
    if TOKEN_SEP in text or not lines:
        return "msra"
    return "conll" if all(len(c := line.split()) >= 2 and len(c[0]) == 1 for line in lines) else "msra"


def read_msra(path, text):
    """(chars, tags, where) per line: characters joined by U+0002, a TAB, as many tags joined by U+0002."""
    sentences = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        if "\t" not in line:
            raise UserError(f"{where}: no TAB between the characters and the labels")
        chars_part, tags_part = line.split("\t", 1)
        if not chars_part:
            raise UserError(f"{where}: empty sentence")
        chars, tags = chars_part.split(TOKEN_SEP), tags_part.split(TOKEN_SEP)
        if len(chars) != len(tags):
            raise UserError(f"{where}: {len(chars)} characters but {len(tags)} labels")
        long_token = next((c for c in chars if len(c) != 1), None)
        if long_token is not None:
            raise UserError(f"{where}: token {long_token!r} is {len(long_token)} characters; an MSRA-layout line joins "
                            "single characters with U+0002")
        sentences.append((chars, tags, where))
    one_char = [s for s in sentences if len(s[0]) == 1]
    if sentences and len(one_char) == len(sentences) and len(sentences) > 1:
        raise UserError(f"{one_char[0][2]}: every sentence is one character long: this reads like CoNLL columns (one "
                        "character and its label a line, a blank line between sentences); use --data_format conll")
    for (a, b) in zip(sentences, sentences[1:]):
        if len(a[0]) == 1 and len(b[0]) == 1 and int(b[2].rsplit(":", 1)[1]) == int(a[2].rsplit(":", 1)[1]) + 1:
            raise UserError(f"{a[2]}: one character and its label on consecutive lines: CoNLL lines in an MSRA-layout "
                            "file (give each layout a file of its own)")
    return sentences


def read_conll(path, text):
    """(chars, tags, where) per blank-line-separated block of ``char<TAB or spaces>label`` lines (the first column
    is the character, the last the label)."""
    sentences, chars, tags, first = [], [], [], None
    for lineno, line in enumerate(text.split("\n") + [""], 1):
        line = line.rstrip("\r")
        if not line.strip():
            if chars:
                sentences.append((chars, tags, f"{path}:{first}"))
            chars, tags = [], []
            continue
        where = f"{path}:{lineno}"
        if TOKEN_SEP in line:
            raise UserError(f"{where}: U+0002 in a CoNLL-layout file: an MSRA-layout line (use --data_format msra)")
        columns = line.split()
        if len(columns) < 2:
            raise UserError(f"{where}: one column; a CoNLL line is a character, then its label")
        if len(columns[0]) != 1:
            raise UserError(f"{where}: token {columns[0]!r} is {len(columns[0])} characters; this reads one character "
                            "a line (a word-level file's labels do not align to characters)")
        if not chars:
            first = lineno
        chars.append(columns[0])
        tags.append(columns[-1])
    return sentences


def read_jsonl(path, text):
    """(chars, tags, where) per JSON line ``{"text": ..., "label": {type: {mention: [[start, end_inclusive]]}}}``."""
    sentences = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{where}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"]:
            raise UserError(f'{where}: not an object with a non-empty "text"')
        if not isinstance(record.get("label"), dict):
            raise UserError(f'{where}: no "label" object (an unlabelled file cannot be trained or scored on)')
        chars = list(record["text"])
        tags = ["O"] * len(chars)
        for entity_type, mentions in record["label"].items():
            for mention, spans in (mentions or {}).items():
                for span in spans:
                    start, end = span[0], span[1] + 1
                    if not (0 <= start < end <= len(chars)) or record["text"][start:end] != mention:
                        raise UserError(f"{where}: span {span} of {entity_type} is not {mention!r} in the text")
                    if any(tag != "O" for tag in tags[start:end]):
                        raise UserError(f"{where}: span {span} of {entity_type} overlaps another entity")
                    tags[start:end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
        sentences.append((chars, tags, where))
    return sentences


READERS = {"msra": read_msra, "conll": read_conll, "jsonl": read_jsonl}


def detect_scheme(sentences):
    """'BMES' (M- tags), 'BIOES' (S-/E- tags), 'IOB1' (an I-X that starts an entity), else 'BIO'."""
    prefixes = {tag[0] for _, tags, _ in sentences for tag in tags}
    if "M" in prefixes:
        return "BMES"
    if prefixes & {"S", "E"}:
        return "BIOES"
    for _, tags, _ in sentences:
        previous = "O"
        for tag in tags:
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                return "IOB1"
            previous = tag
    return "BIO"


def to_bio(tags, scheme):
    """One sentence's tags in ``scheme`` as BIO: S-X→B-X, M-X/E-X→I-X; an I-X that starts an entity (IOB1)→B-X."""
    out, previous = [], "O"
    for tag in tags:
        if tag == "O":
            bio = "O"
        else:
            prefix, entity_type = tag[0], tag[2:]
            if prefix in ("B", "S"):
                bio = f"B-{entity_type}"
            elif prefix == "I" and scheme == "IOB1" and previous[2:] != entity_type:
                bio = f"B-{entity_type}"
            else:
                bio = f"I-{entity_type}"
        out.append(bio)
        previous = "O" if tag[0] in ("S", "E") or tag == "O" else bio
    return out


def read_data_file(path, data_format="auto"):
    """A data file as ({'chars', 'labels' (BIO), 'where'} examples, layout, scheme)."""
    text = read_text(path)
    layout = detect_layout(text) if data_format == "auto" else data_format
    if layout not in READERS:
        raise UserError(f"--data_format {data_format}: not one of auto, {', '.join(LAYOUTS)}")
    sentences = READERS[layout](path, text)
    if not sentences:
        raise UserError(f"{path}: no sentences (empty file)")
    for _, tags, where in sentences:
        for tag in tags:
            if not _TAG_RE.match(tag):
                raise UserError(f"{where}: label {tag!r} is not O or B-/I-/E-/S-/M- and a type")
    scheme = detect_scheme(sentences)
    examples = [{"chars": chars, "labels": to_bio(tags, scheme) if scheme != "BIO" else tags, "where": where}
                for chars, tags, where in sentences]
    return examples, layout, scheme
