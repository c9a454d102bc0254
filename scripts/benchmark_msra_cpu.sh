#!/usr/bin/env bash
# Real MSRA NER on this CPU, end to end: teacher -> OFA over widths x depths -> export + INT8 of every pair ->
# test F1 + latency beside LAC -> a results JSON and its plot. 1.5-2 hours on 2 cores.
#   bash scripts/benchmark_msra_cpu.sh --teacher pretrained   # results/msra_pretrained_cpu.json (m3e-small teacher)
#   bash scripts/benchmark_msra_cpu.sh                        # results/msra_cpu.json (teacher from random weights)
#   bash scripts/benchmark_msra_cpu.sh [--teacher pretrained] --quick   # ~10 minutes, same chain, few steps (*_quick.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Paddle's bundled MKL takes a slow path on AMD CPUs unless told otherwise; on an Intel CPU with AVX-512 the same
# setting forces the AVX2 path and slows training (docs/results.md, "MKL_DEBUG_CPU_TYPE on Intel"): AMD only
if grep -q AuthenticAMD "${CPUINFO:-/proc/cpuinfo}" 2>/dev/null; then  # CPUINFO: for the tests
  export MKL_DEBUG_CPU_TYPE=${MKL_DEBUG_CPU_TYPE:-5}
fi
PY=${PYTHON:-python}
exec $PY scripts/benchmark_msra_cpu.py "$@"
