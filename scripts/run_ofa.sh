#!/usr/bin/env bash
# Stage 2, the original command (verbatim): the OFA width supernet distilled from stage 1's ../tmp/msra_ner/model_best/.
# Outputs in ../tmp/msra_ner_ofa/model_<width>/. Extra arguments are passed on and win, e.g. --device cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
export TASK_NAME=msra
export task_pretrained_model_dir=../tmp/msra_ner/model_best/

python -u ./run_msra_ner_ofa.py --model_type bert \
          --model_name_or_path ${task_pretrained_model_dir} \
          --task_name $TASK_NAME \
          --max_seq_length 128     \
          --batch_size 32       \
          --learning_rate 2e-5     \
          --num_train_epochs 30     \
          --logging_steps 1     \
          --save_steps 100     \
          --output_dir ../tmp/msra_ner_ofa/ \
          --device gpu  \
          --width_mult_list 1.0 0.8333333333333334 0.6666666666666666 0.5 "$@"
