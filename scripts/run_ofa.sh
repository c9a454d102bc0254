#!/usr/bin/env bash
# Stage 2 on a GPU: OFA width supernet distilled from the stage-1 teacher -- the original command.
set -euo pipefail
cd "$(dirname "$0")/.."
python run_msra_ner_ofa.py \
  --model_type bert \
  --model_name_or_path ./tmp/msra_ner/model_best \
  --task_name msra_ner \
  --max_seq_length 128 \
  --batch_size 32 \
  --learning_rate 2e-5 \
  --num_train_epochs 6 \
  --logging_steps 10 \
  --save_steps 500 \
  --output_dir ./tmp/msra_ner_ofa/ \
  --device gpu \
  --width_mult_list 1.0 0.8333 0.6667 0.5 "$@"
