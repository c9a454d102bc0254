"""Throughput of one shared NerPredictor: 4 threads against 1 (the workload twice, in 16 calls), best of 2 rounds.

    python scripts/thread_throughput.py STATIC_EXPORT_DIR
"""
import sys, time, os
from concurrent.futures import ThreadPoolExecutor
from ner_ofa import NerPredictor
from ner_ofa.backends import cpu_flags
ner = NerPredictor(sys.argv[1], threads=2)
texts = [l.strip() for l in open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data", "bench", "msra_test_10451_chars.txt"), encoding="utf-8") if l.strip()]
ner(texts)
groups = [texts[i::8] for i in range(8)]
res = {}
for n in (1, 4, 1, 4):
    t = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(ner, groups * 2))
    res.setdefault(n, []).append(time.perf_counter() - t)
cpu = [l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
print({n: round(min(v), 3) for n, v in res.items()}, "4 vs 1 throughput:", round(min(res[1]) / min(res[4]), 2), cpu, "VNNI" if {"avx512_vnni","avx_vnni"} & cpu_flags() else "no VNNI")
