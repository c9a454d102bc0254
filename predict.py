r"""Text → entities with an exported model (Paddle Inference) or any model directory of this project (dygraph).

    python predict.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model --text "张伟在北京大学工作。"
    python predict.py --model_dir ../tmp/msra_ner/model_best --input_file texts.txt > entities.jsonl

--model_dir is either a static export (the directory of --static_sub_model, or its PREFIX) or a dygraph
directory (model_best/, a sub-model, or stage 2's model_<width>/, which runs at that width). One JSON line per input text:
{"text": ..., "entities": [{"type", "text", "start", "end"}]} with [start, end) character offsets into the
text. --format plain is for reading, not parsing: each text on a line of its own, then one line per entity, two
spaces and "TYPE<TAB>start<TAB>end<TAB>text". Input is split on "\n" only (a trailing "\r" is dropped), so there
is one result per input line whatever other line separators (U+2028, form feed, ...) the texts contain; a UTF-8
byte order mark at the start of the input is dropped, not labelled. Texts of any length are labelled in
overlapping windows; an empty line gives an empty result.
"""
import argparse
import json
import os
import sys

from ner_ofa import cli
from ner_ofa.cli import UserError
from ner_ofa.predictor import NerPredictor


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--model_dir", required=True, help="static export dir/prefix, or a dygraph model directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", action="append", help="a text to label (repeatable)")
    source.add_argument("--input_file", help="UTF-8 file, one text per line (default: stdin)")
    parser.add_argument("--format", choices=["json", "plain"], default="json", help="output format")
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="window length (default: the model's, from model_info.json)")
    parser.add_argument("--batch_size", type=int, default=32, help="windows per batch")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="device")
    parser.add_argument("--threads", type=int, default=2, help="CPU math threads (static and ONNX models)")
    parser.add_argument("--backend", choices=["paddle", "onnxruntime"], default="paddle",
                        help="paddle: Paddle Inference (static) or dygraph; onnxruntime: a quantize_model.py directory")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8",
                        help="which ONNX model of a quantize_model.py directory to run (--backend onnxruntime)")
    return parser.parse_args(argv)


BOM = "\ufeff"


def read_texts(args):
    if args.text is not None:
        return args.text
    if args.input_file:
        if not os.path.isfile(args.input_file):
            raise UserError(f"{args.input_file}: input file not found")
        try:
            with open(args.input_file, encoding="utf-8-sig", newline="") as handle:  # -sig: a leading BOM dropped
                return split_lines(handle.read())
        except UnicodeDecodeError:
            raise UserError(f"{args.input_file}: not UTF-8") from None
    stream = getattr(sys.stdin, "buffer", None)  # bytes: no universal-newline translation of a lone "\r"
    if stream is None:
        return split_lines(sys.stdin.read().removeprefix(BOM))
    try:
        return split_lines(stream.read().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError("standard input: not UTF-8") from None


def split_lines(text):
    """One text per "\n" line (a trailing "\r" dropped); unlike str.splitlines, U+2028, U+0085, form feed ...
    stay inside the text they belong to."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def main(args):
    ner = NerPredictor(args.model_dir, args.device, args.threads, args.backend, args.precision, args.max_seq_length,
                       args.batch_size)
    texts = read_texts(args)
    if not texts:
        raise UserError(f"{args.input_file or 'standard input'}: no text to label (empty input)")
    results = ner(texts)
    for text, entities in zip(texts, results):
        if args.format == "json":
            print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
        else:
            print(text)
            for e in entities:
                print(f"  {e['type']}\t{e['start']}\t{e['end']}\t{e['text']}")
    return results


if __name__ == "__main__":
    cli.run_main(main, parse_args)
