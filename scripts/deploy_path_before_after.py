"""The deploy path's own cost before and after a change, in one run: the labelling code (windowing, batching,
decoding: ner_ofa/features.py and ner_ofa/labelling.py) of git ref --before against this checkout's, both driving the
same model session, timed in interleaved rounds on the latency workload. Per side: seconds, seconds inside and
outside the model, tokens run and how many were real, model calls; then whether the two give the same entities on
the workload and their ChunkEvaluator scores on --data_file.

    python scripts/deploy_path_before_after.py --model_dir OUT/export/width_0.5_depth_0.5/int8 --before c770afc

--model_dir: an INT8 directory of quantize_model.py (ONNX Runtime, int8 or --precision fp32) or a static export
(Paddle Inference). Writes --output (JSON) and prints a table.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli, model_io  # noqa: E402
from ner_ofa.data import read_ner_file  # noqa: E402
from ner_ofa import timing  # noqa: E402
from ner_ofa.predictor import load_logits_fn  # noqa: E402

SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--model_dir", required=True, help="INT8 directory (quantize_model.py) or static export")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8", help="of an INT8 directory's two models")
    p.add_argument("--before", default="c770afc", help="git ref whose labelling code is 'before'")
    p.add_argument("--bench_file", default=os.path.join(SHARED, "bench", "msra_test_10451_chars.txt"),
                   help="latency workload, one text a line")
    p.add_argument("--data_file", default=os.path.join(SHARED, "msra_ner", "test.tsv"),
                   help="labelled file both sides are scored on ('' for none)")
    p.add_argument("--threads", type=int, default=2, help="model threads")
    p.add_argument("--batch_size", type=int, default=32, help="windows per model call (at most)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--output", default=os.path.join(REPO, "results", "deploy_path_cpu.json"), help="results JSON")
    return p.parse_args(argv)


def before_modules(ref, into):
    """ner_ofa/features.py and ner_ofa/labelling.py of ``ref`` as modules of their own (package ``before``)."""
    package = os.path.join(into, "before")
    os.makedirs(package)
    open(os.path.join(package, "__init__.py"), "w").close()
    for name in ("features", "labelling"):
        try:
            source = subprocess.run(["git", "-C", REPO, "show", f"{ref}:ner_ofa/{name}.py"], check=True,
                                    capture_output=True, text=True).stdout
        except subprocess.CalledProcessError as error:
            raise cli.UserError(f"git show {ref}:ner_ofa/{name}.py failed: {error.stderr.strip()}")
        with open(os.path.join(package, f"{name}.py"), "w", encoding="utf-8") as handle:
            handle.write(source.replace("from ner_ofa.features import", "from before.features import"))
    sys.path.insert(0, into)
    spec = importlib.util.spec_from_file_location("before.labelling", os.path.join(package, "labelling.py"))
    importlib.import_module("before")
    features = importlib.import_module("before.features")
    labelling = importlib.util.module_from_spec(spec)
    sys.modules["before.labelling"] = labelling
    spec.loader.exec_module(labelling)
    return features, labelling


def main(args):
    from ner_ofa.features import CharEncoder
    from ner_ofa.labelling import predict_entities

    cli.setup_logging()
    texts = timing.read_workload(args.bench_file)
    logits_fn, tokenizer, model_info = load_logits_fn(args.model_dir, threads=args.threads,
                                                      precision=args.precision)
    labels, max_seq_length = model_info["labels"], model_info.get("max_seq_length", 128)
    shapes = "exact" if model_info.get("kind") == "onnx" else "buckets"
    with tempfile.TemporaryDirectory() as tmp:
        old_features, old_labelling = before_modules(args.before, tmp)
        old_encoder, new_encoder = old_features.CharEncoder(tokenizer), CharEncoder(tokenizer)
        old_meter = timing.Meter(logits_fn, old_encoder.pad_id)
        new_meter = timing.Meter(logits_fn, new_encoder.pad_id)

        def before(batch):
            return old_labelling.predict_entities(old_meter, batch, old_encoder, labels, max_seq_length,
                                                  args.batch_size)

        def after(batch):
            return predict_entities(new_meter, batch, new_encoder, labels, max_seq_length, args.batch_size, shapes)

        before.meter, after.meter = old_meter, new_meter
        timed = timing.time_models_detailed([before, after], texts, args.repeats)
        spans = [[[(e["type"], e["start"], e["end"]) for e in entities] for entities in side(texts)]
                 for side in (before, after)]
        result = {"model_dir": os.path.abspath(args.model_dir), "precision": args.precision, "shapes_after": shapes,
                  "before": dict(ref=args.before, **timed[0]),
                  "after": dict(ref=subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                                   capture_output=True, text=True).stdout.strip(), **timed[1]),
                  "workload": {"file": os.path.basename(args.bench_file), "texts": len(texts),
                               "characters": sum(map(len, texts)), "threads": args.threads,
                               "batch_size": args.batch_size, "repeats": args.repeats},
                  "same_entities_on_workload": {"texts": sum(a == b for a, b in zip(*spans)), "of": len(texts)},
                  "hardware": timing.hardware(),
                  "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])}
        if args.data_file:
            examples = read_ner_file(args.data_file)
            result["scores"] = {side: timing.scores_of(fn, examples) for side, fn in (("before", before),
                                                                                     ("after", after))}
    model_io.write_json(args.output, result)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
