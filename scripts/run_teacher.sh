#!/usr/bin/env bash
# Stage 1, the original command (the original README's, verbatim): bert-base-chinese from the hub, PaddleNLP's
# msra_ner download, a GPU. Outputs go to ../tmp/ -- beside this checkout, as in the original project, so models
# never land inside the repository. Extra arguments are passed on and win (the last occurrence of a flag counts):
#   bash scripts/run_teacher.sh --device cpu --data_dir ~/msra --model_name_or_path ~/bert-base-chinese
# Several GPUs: python -m paddle.distributed.launch --gpus 0,1,2,3 run_msra_ner.py ... (--batch_size is per card)
set -euo pipefail
cd "$(dirname "$0")/.."
# the original pinned GPU 0; a CUDA_VISIBLE_DEVICES the user set (even empty: no GPU) is kept
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-0}"

python -u ./run_msra_ner.py \
    --model_name_or_path bert-base-chinese \
    --max_seq_length 128 \
    --batch_size 32 \
    --learning_rate 2e-5 \
    --num_train_epochs 30 \
    --logging_steps 1 \
    --save_steps 500 \
    --output_dir ../tmp/msra_ner/ \
    --device gpu "$@"
