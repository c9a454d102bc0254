#!/usr/bin/env bash
# Stage 3: cut the width-0.5 sub-model out of the supernet; dygraph + static (Paddle Inference) -- the original command.
# WIDTH=0.6667 bash scripts/export.sh  exports another width.
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=${WIDTH:-0.5}
python export_model_msra_ner_ofa.py \
  --model_type bert \
  --model_name_or_path ./tmp/msra_ner_ofa/model_${WIDTH} \
  --max_seq_length 128 \
  --sub_model_output_dir ./tmp/msra_ner_ofa/${WIDTH}/sub_model \
  --static_sub_model ./tmp/msra_ner_ofa/${WIDTH}/static_sub_model/model \
  --n_gpu 1 \
  --width_mult ${WIDTH} "$@"
