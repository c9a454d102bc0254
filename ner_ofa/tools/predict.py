r"""Text → entities with an exported model (Paddle Inference) or any model directory of this project (dygraph).

    python predict.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model --text "张伟在北京大学工作。"
    python predict.py --model_dir ../tmp/msra_ner/model_best --input_file texts.txt > entities.jsonl

--model_dir is either a static export (the directory of --static_sub_model, or its PREFIX) or a dygraph
directory (model_best/, a sub-model, or stage 2's model_<width>/, which runs at that width). One JSON line per input text:
{"text": ..., "entities": [{"type", "text", "start", "end", "score"}]} with [start, end) character offsets into
the text; score (0-1): the mean, over the entity's characters, of the probability of the label each got. --format
plain is for reading, not parsing: each text on a line of its own, then one line per entity, two spaces and
"TYPE<TAB>start<TAB>end<TAB>score<TAB>text". The input is read, labelled and written --chunk_size texts at a time. Input is split on "\n" only (a trailing "\r" is dropped), so there
is one result per input line whatever other line separators (U+2028, form feed, ...) the texts contain; a UTF-8
byte order mark at the start of the input is dropped, not labelled. Texts of any length are labelled in
overlapping windows; an empty line gives an empty result.
"""
import argparse
import io
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
    parser.add_argument("--chunk_size", type=int, default=256,
                        help="texts read, labelled and written at a time (memory is bounded by it, not by the input)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="device")
    parser.add_argument("--threads", type=int, default=2, help="CPU math threads (static and ONNX models)")
    parser.add_argument("--backend", choices=["paddle", "onnxruntime"], default="paddle",
                        help="paddle: Paddle Inference (static) or dygraph; onnxruntime: a quantize_model.py directory")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8",
                        help="which ONNX model of a quantize_model.py directory to run (--backend onnxruntime)")
    return parser.parse_args(argv)


BOM = "\ufeff"


def read_texts(args):
    """The texts to label, one at a time (a file or stdin is read line by line, never whole)."""
    if args.text is not None:
        yield from args.text
        return
    if args.input_file:
        if not os.path.isfile(args.input_file):
            raise UserError(f"{args.input_file}: input file not found")
        with open(args.input_file, "rb") as handle:
            yield from split_lines(handle, args.input_file)
        return
    stream = getattr(sys.stdin, "buffer", None)  # bytes: no universal-newline translation of a lone "\r"
    if stream is None:  # a text stream put in place of stdin (a notebook's)
        stream = io.BytesIO(sys.stdin.read().encode("utf-8"))
    yield from split_lines(stream, "standard input")


def split_lines(stream, name):
    """One text per "\n" line of a binary stream (a trailing "\r" dropped, a leading UTF-8 BOM dropped); unlike
    str.splitlines, U+2028, U+0085, form feed ... stay inside the text they belong to."""
    for lineno, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{name}:{lineno}: not UTF-8") from None
        if lineno == 1:
            line = line.removeprefix(BOM)
        yield line[:-1].removesuffix("\r") if line.endswith("\n") else line.removesuffix("\r")


def chunks(texts, size):
    chunk = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def main(args):
    """Label the input, writing each chunk's lines as soon as it is labelled. Returns the results of --text
    texts (already in memory); of a file or stdin, only how many texts were labelled."""
    if args.chunk_size <= 0:
        raise UserError(f"--chunk_size must be positive, got {args.chunk_size}")
    ner = NerPredictor(args.model_dir, args.device, args.threads, args.backend, args.precision, args.max_seq_length,
                       args.batch_size)
    labelled, kept = 0, [] if args.text is not None else None
    for chunk in chunks(read_texts(args), args.chunk_size):
        results = ner(chunk)
        if kept is not None:
            kept.extend(results)
        for text, entities in zip(chunk, results):
            if args.format == "json":
                print(json.dumps({"text": text, "entities": entities}, ensure_ascii=False))
            else:
                print(text)
                for e in entities:
                    print(f"  {e['type']}\t{e['start']}\t{e['end']}\t{e['score']:.4f}\t{e['text']}")
        sys.stdout.flush()
        labelled += len(chunk)
    if not labelled:
        raise UserError(f"{args.input_file or 'standard input'}: no text to label (empty input)")
    return kept if kept is not None else {"texts": labelled}


def run(argv=None):
    """The console script ``ner-ofa-predict`` (and ``python predict.py``)."""
    return cli.run_main(main, parse_args, argv)


if __name__ == "__main__":
    run()
