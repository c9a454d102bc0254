#!/usr/bin/env bash
# Real MSRA NER on this CPU, end to end: teacher from scratch -> OFA over 1.0 0.8333 0.6667 0.5 -> export every
# width -> test F1 + latency -> results/msra_cpu.json and results/msra_cpu.png. About 1.5-2 hours on 2 cores.
#   bash scripts/benchmark_msra_cpu.sh            # full run
#   bash scripts/benchmark_msra_cpu.sh --quick    # ~10 minutes, same chain, few steps (writes results/msra_cpu_quick.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=${PYTHON:-python}
if [[ " $* " == *" --quick "* ]]; then
  exec $PY scripts/benchmark_msra_cpu.py --results results/msra_cpu_quick.json --work_dir tmp/msra_cpu_quick "$@"
fi
exec $PY scripts/benchmark_msra_cpu.py "$@"
