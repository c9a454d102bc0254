"""INT8 for the CPU: an exported static sub-model -> ONNX (paddle2onnx) -> ONNX Runtime dynamic INT8 quantization.

    python quantize_model.py --model_dir ../tmp/msra_ner_ofa/model_0.5/static_model --output_dir ../tmp/msra_ner_ofa/int8_0.5
    python predict.py --model_dir ../tmp/msra_ner_ofa/int8_0.5 --backend onnxruntime --text "..."

Writes OUTPUT_DIR/model.onnx (fp32), OUTPUT_DIR/model.int8.onnx, the tokenizer and model_info.json (kind "onnx").
With --data_file (a test.tsv), also scores fp32 (Paddle Inference) and INT8 on it and reports the F1 change.
Why dynamic INT8 in ONNX Runtime: weights are quantized per channel ahead of time and activations per batch at
run time, so it needs no calibration data and no change to the model; on CPUs with AVX-512 VNNI its INT8 MatMuls
are several times faster than fp32 (docs/deploy.md, docs/results.md).
"""
import argparse
import os
import time

from ner_ofa.data import check_labels_known, read_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa.scoring import evaluate
from ner_ofa import backends, cli, model_io, training
from ner_ofa.cli import UserError, logger


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--model_dir", required=True, help="a static export (export_model_msra_ner_ofa.py): its directory or PREFIX")
    p.add_argument("--output_dir", required=True, help="where model.onnx and model.int8.onnx go")
    p.add_argument("--data_file", default=None, help="optional msra_ner-layout file to compare fp32 and INT8 F1 on")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the comparison")
    p.add_argument("--batch_size", type=int, default=32, help="windows per batch for the comparison")
    p.add_argument("--reduce_range", choices=["auto", "on", "off"], default="auto",
                   help="7-bit INT8 weights: auto = on for x86 CPUs without VNNI (8-bit products can saturate "
                        "there), off where VNNI or non-x86")
    return p.parse_args(argv)


def main(args):
    cli.setup_logging()
    found = backends.find_static(args.model_dir)
    if found is None:
        raise UserError(f"{args.model_dir}: not a static export (its directory or PREFIX from "
                        "export_model_msra_ner_ofa.py)")
    prefix, model_info = found
    static_dir = os.path.dirname(os.path.abspath(prefix))
    check_output_dir(args.output_dir, static_dir)
    tokenizer = model_io.load_tokenizer(static_dir)
    examples = None
    if args.data_file:  # checked before anything is written
        examples = read_ner_file(args.data_file)
        check_labels_known(examples, model_info["labels"], os.path.basename(args.data_file))
    steps = 4 if examples else 2
    started = time.perf_counter()
    os.makedirs(args.output_dir, exist_ok=True)
    logger.info("1/%d ONNX export of %s", steps, prefix)
    fp32 = backends.export_onnx(prefix, os.path.join(args.output_dir, "model.onnx"))
    cli.setup_logging()  # paddle2onnx reconfigures the root logger
    logger.info("2/%d INT8 quantization (ONNX Runtime, dynamic) | elapsed %s", steps, elapsed(started))
    int8 = os.path.join(args.output_dir, "model.int8.onnx")
    reduce_range = backends.quantize_onnx(fp32, int8,
                                          reduce_range={"auto": None, "on": True, "off": False}[args.reduce_range])
    tokenizer.save_pretrained(args.output_dir)
    model_io.write_json(os.path.join(args.output_dir, model_io.INFO_NAME),
                        dict(model_info, kind="onnx", onnx_fp32="model.onnx", onnx_int8="model.int8.onnx",
                             source=args.model_dir, int8_reduce_range=reduce_range))
    result = {"onnx_fp32": fp32, "onnx_int8": int8, "reduce_range": reduce_range,
              "int8_mb": round(os.path.getsize(int8) / 2**20, 2), "fp32_mb": round(os.path.getsize(fp32) / 2**20, 2)}
    logger.info("ONNX fp32 %s (%.1f MB) | INT8 %s (%.1f MB, reduce_range %s) | elapsed %s", fp32, result["fp32_mb"],
                int8, result["int8_mb"], reduce_range, elapsed(started))
    if examples:
        encoder, labels = CharEncoder(tokenizer), model_info["labels"]
        scores, took = {}, None
        for step, (name, fn, shapes) in enumerate((  # each with the shapes NerPredictor gives it
                ("fp32_paddle", backends.static_logits_fn(prefix, threads=args.threads, mkldnn=True), "buckets"),
                ("int8_onnxruntime", backends.onnx_logits_fn(int8, args.threads), "exact")), start=3):
            logger.info("%d/%d scoring %s on %d sentences of %s%s", step, steps, name, len(examples), args.data_file,
                        f" (fp32 took {took:.0f} s)" if took else "")
            start = time.perf_counter()
            scores[name] = evaluate(fn, examples, encoder, labels, model_info["max_seq_length"], args.batch_size,
                                    shapes=shapes)
            took = time.perf_counter() - start
        result["f1"] = {k: v["f1"] for k, v in scores.items()}
        result["f1_change_points"] = 100 * (scores["int8_onnxruntime"]["f1"] - scores["fp32_paddle"]["f1"])
        logger.info("F1 on %s: fp32 %.4f, INT8 %.4f (%+.2f points) | elapsed %s", args.data_file,
                    scores["fp32_paddle"]["f1"], scores["int8_onnxruntime"]["f1"], result["f1_change_points"],
                    elapsed(started))
        model_io.write_json(os.path.join(args.output_dir, "quantization.json"), dict(result, scores=scores))
    return result


def check_output_dir(output_dir, static_dir):
    """OUTPUT_DIR gets model_info.json and the tokenizer: it must not be (or be inside) the static model's directory,
    nor hold another model's model_info.json (an earlier quantize_model.py output may be replaced)."""
    out, source = os.path.realpath(output_dir), os.path.realpath(static_dir)
    if out == source or out.startswith(source + os.sep):
        raise UserError(f"--output_dir {output_dir} is {'' if out == source else 'inside '}the static model's "
                        f"directory {static_dir}; give a directory of its own")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"--output_dir {output_dir} exists and is not a directory")
    info = model_io.read_model_info(output_dir) if os.path.isdir(output_dir) else None
    if info is not None and info.get("kind") != "onnx":
        raise UserError(f"--output_dir {output_dir} holds a {info.get('kind')} model ({model_io.INFO_NAME}); give "
                        "another directory")


def elapsed(started):
    return training.hours_minutes_seconds(time.perf_counter() - started)


def run(argv=None):
    """The console script ``ner-ofa-quantize`` (and ``python quantize_model.py``)."""
    return cli.run_main(main, parse_args, argv)


if __name__ == "__main__":
    run()
