"""CPU latency of text -> entities on a fixed workload, measured for several models in one run.

    python benchmark.py --models tmp/msra_cpu/export/teacher/static tmp/msra_cpu/export/0.5/static

Time = tokenization + windowing + model + decoding of entities, for the whole workload; model load and one
warm-up pass are excluded; the models are timed in interleaved rounds and the median per model is reported.
"""
import argparse
import os
import platform
import statistics
import sys
import time

import utils


def read_workload(path):
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle.read().splitlines() if line.strip()]


def hardware():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def export_static(model_dir, prefix):
    """Save a teacher/sub-model directory as a static model (with tokenizer and model_info.json beside it)."""
    model, tokenizer, info = utils.load_model_dir(model_dir, ["teacher", "sub_model"])
    static_dir = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(static_dir, exist_ok=True)
    utils.save_static(model, prefix)
    tokenizer.save_pretrained(static_dir)
    utils.write_json(os.path.join(static_dir, utils.INFO_NAME), dict(info, kind="static", prefix=os.path.basename(prefix)))
    return prefix


def time_models(loaded, texts, max_seq_length, batch_size, repeats):
    """``loaded``: list of (logits_fn, encoder, labels). Returns the median seconds per model."""
    times = [[] for _ in loaded]
    for fn, encoder, labels in loaded:  # warm-up
        utils.predict_entities(fn, texts, encoder, labels, max_seq_length, batch_size)
    for _ in range(repeats):
        for k, (fn, encoder, labels) in enumerate(loaded):
            start = time.perf_counter()
            utils.predict_entities(fn, texts, encoder, labels, max_seq_length, batch_size)
            times[k].append(time.perf_counter() - start)
    return [round(statistics.median(t), 3) for t in times]


def time_static_models(prefixes, texts, threads, max_seq_length, batch_size, repeats):
    loaded = []
    for prefix in prefixes:
        static_dir = os.path.dirname(os.path.abspath(prefix))
        info = utils.read_model_info(static_dir)
        fn = utils.static_logits_fn(prefix, threads=threads, mkldnn=True)
        loaded.append((fn, utils.CharEncoder(utils.load_tokenizer(static_dir)), info["labels"]))
    return time_models(loaded, texts, max_seq_length, batch_size, repeats)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="static model directories (from export)")
    p.add_argument("--bench_file", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         "shared", "data", "bench", "msra_test_10451_chars.txt"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def main(args):
    if not os.path.isfile(args.bench_file):
        raise utils.UserError(f"{args.bench_file}: workload file not found")
    texts = read_workload(args.bench_file)
    prefixes = []
    for model_dir in args.models:
        info = utils.read_model_info(model_dir)
        if not info or info.get("kind") != "static":
            raise utils.UserError(f"{model_dir}: not a static export (no model_info.json of kind 'static')")
        prefixes.append(os.path.join(model_dir, info["prefix"]))
    seconds = time_static_models(prefixes, texts, args.threads, args.max_seq_length, args.batch_size, args.repeats)
    print(f"{sum(len(t) for t in texts)} characters, {args.threads} threads, {hardware()}")
    for model_dir, s in zip(args.models, seconds):
        print(f"{s:8.3f} s  {model_dir}")
    return dict(zip(args.models, seconds))


if __name__ == "__main__":
    utils.cli(main, parse_args)
