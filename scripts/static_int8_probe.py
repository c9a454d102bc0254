"""ORT static INT8 (QDQ, MatMul only, MinMax calibration on train windows) vs the project's dynamic INT8, through
NerPredictor on the bench workload (interleaved rounds, median) and test F1 (exact shapes). The static model goes beside INT8_DIR (static_u8/ or static_s8/).
usage: python scripts/static_int8_probe.py INT8_DIR TRAIN_TSV TEST_TSV BENCH_TXT OUT_JSON [act u8|s8] [calib_sentences] [repeats]"""
import json
import os
import shutil
import statistics
import sys
import time


def main():
    import numpy as np
    from ner_ofa import model_io, backends
    from ner_ofa.data import read_ner_file
    from ner_ofa.features import CharEncoder
    from ner_ofa.scoring import evaluate
    from ner_ofa.predictor import NerPredictor
    from ner_ofa.timing import read_workload, hardware

    src, train, test, bench, out = sys.argv[1:6]
    act = sys.argv[6] if len(sys.argv) > 6 else "u8"
    n_cal = int(sys.argv[7]) if len(sys.argv) > 7 else 256
    repeats = int(sys.argv[8]) if len(sys.argv) > 8 else 5
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

    dst = os.path.join(os.path.dirname(os.path.abspath(src)), f"static_{act}")  # beside INT8_DIR
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
            s = time.perf_counter(); p(texts); times[k].append(time.perf_counter() - s)
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
    main()
