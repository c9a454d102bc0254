"""ONNX Runtime static INT8 (QDQ, MatMul only, per-channel weights, MinMax calibration on the windows of train
sentences) against the project's dynamic INT8 on one quantize_model.py directory: latency through NerPredictor on the
workload (interleaved rounds, median) and test F1 of both. The static model goes beside --model_dir
(static_u8/ or static_s8/).

    python scripts/static_int8_probe.py --model_dir WORK/export/0.5_1.0/int8 --output OUT.json --activation u8
"""
import argparse
import json
import os
import shutil
import statistics
import time

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a quantize_model.py output directory")
    p.add_argument("--output", required=True, help="the results JSON")
    p.add_argument("--train_file", default=os.path.join(SHARED, "msra_ner", "train.tsv"),
                   help="calibration sentences are its first ones (default: %(default)s)")
    p.add_argument("--test_file", default=os.path.join(SHARED, "msra_ner", "test.tsv"),
                   help="scored by both models (default: %(default)s)")
    p.add_argument("--bench_file", default=os.path.join(SHARED, "bench", "msra_test_10451_chars.txt"),
                   help="the timed workload, one text per line (default: %(default)s)")
    p.add_argument("--activation", choices=["u8", "s8"], default="u8", help="static activations' type (default: u8)")
    p.add_argument("--calibration_sentences", type=int, default=256, help="(default: 256)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per model (default: 5)")
    return p.parse_args(argv)


def main(args):
    import numpy as np
    from ner_ofa import model_io, backends
    from ner_ofa.data import read_ner_file
    from ner_ofa.features import CharEncoder
    from ner_ofa.scoring import evaluate
    from ner_ofa.predictor import NerPredictor
    from ner_ofa.timing import read_workload, hardware

    src, train, test, bench, out = args.model_dir, args.train_file, args.test_file, args.bench_file, args.output
    act, n_cal, repeats = args.activation, args.calibration_sentences, args.repeats
    info = model_io.read_model_info(src)
    tok = model_io.load_tokenizer(src)
    enc, labels, L = CharEncoder(tok), info["labels"], info["max_seq_length"]
    fp32 = os.path.join(src, info["onnx_fp32"])

    # calibration inputs: what the predictor feeds the model on train sentences
    seen = []
    f32 = backends.onnx_logits_fn(fp32, 2)

    def record(ids):
        seen.append(np.array(ids, dtype="int64"))
        return f32(ids)
    evaluate(record, read_ner_file(train)[:n_cal], enc, labels, L, 32, shapes="exact")

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort
    name = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(seen)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    dst = os.path.join(os.path.dirname(os.path.abspath(src)), f"static_{act}")  # beside --model_dir
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    pre = os.path.join(dst, "model.pre.onnx")
    quant_pre_process(fp32, pre, skip_symbolic_shape=True)
    t0 = time.perf_counter()
    quantize_static(pre, os.path.join(dst, info["onnx_int8"]), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    quant_s = time.perf_counter() - t0

    texts = read_workload(bench)
    preds = {"dynamic": NerPredictor(src, threads=2), f"static_{act}": NerPredictor(dst, threads=2)}
    for p in preds.values():
        p(texts)  # warm-up
    times = {k: [] for k in preds}
    for _ in range(repeats):
        for k, p in preds.items():
            start = time.perf_counter()
            p(texts)
            times[k].append(time.perf_counter() - start)
    ents = {k: p(texts) for k, p in preds.items()}
    tests = read_ner_file(test)
    f1 = {k: evaluate(p.logits_fn, tests, enc, labels, L, 32, shapes="exact")["f1"] for k, p in preds.items()}
    res = {"hardware": hardware(), "source": src, "activation": act, "calibration_sentences": n_cal,
           "calibration_batches": len(seen), "quantize_seconds": round(quant_s, 1), "repeats": repeats,
           "median_seconds": {k: round(statistics.median(v), 4) for k, v in times.items()},
           "all_seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
           "test_f1": f1, "same_bench_entities": ents["dynamic"] == ents[f"static_{act}"]}
    res["static_speedup"] = round(res["median_seconds"]["dynamic"] / res["median_seconds"][f"static_{act}"], 3)
    json.dump(res, open(out, "w"), indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(parse_args())
