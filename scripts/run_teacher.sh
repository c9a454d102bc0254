#!/usr/bin/env bash
# Stage 1 on a GPU with the full MSRA NER (downloaded by PaddleNLP) -- the original command.
# Offline: add --data_dir DIR (train.tsv [dev.tsv] test.tsv) and give a local --model_name_or_path.
# Several GPUs: python -m paddle.distributed.launch --gpus 0,1,2,3 run_msra_ner.py ... (--batch_size is per card)
set -euo pipefail
cd "$(dirname "$0")/.."
python run_msra_ner.py \
  --model_name_or_path bert-base-chinese \
  --max_seq_length 128 \
  --batch_size 32 \
  --learning_rate 2e-5 \
  --num_train_epochs 3 \
  --logging_steps 1 \
  --save_steps 500 \
  --output_dir ./tmp/msra_ner/ \
  --device gpu "$@"
