"""Throughput of one shared NerPredictor: 4 threads against 1 (the workload twice, in 16 calls), best of 2 rounds.

    python scripts/thread_throughput.py STATIC_EXPORT_DIR [--bench_file FILE]
"""
import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "bench",
                     "msra_test_10451_chars.txt")


def main(args):
    from ner_ofa import NerPredictor
    from ner_ofa.timing import hardware, read_workload

    ner = NerPredictor(args.model_dir, threads=2)
    texts = read_workload(args.bench_file)
    ner(texts)  # warm-up
    groups = [texts[i::8] for i in range(8)]
    seconds = {}
    for n in (1, 4, 1, 4):
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(ner, groups * 2))
        seconds.setdefault(n, []).append(time.perf_counter() - start)
    best = {n: round(min(v), 3) for n, v in seconds.items()}
    print(best, "4 vs 1 throughput:", round(best[1] / best[4], 2), hardware())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a static export, quantize_model.py output or model directory")
    parser.add_argument("--bench_file", default=BENCH, help="one text per line (default: %(default)s)")
    main(parser.parse_args())
