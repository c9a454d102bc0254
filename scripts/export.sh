#!/usr/bin/env bash
# Stage 3, the original command (verbatim): cut width 0.5 out of ../tmp/msra_ner_ofa/model_0.5 into
# model_0.5/dynamic_model (dygraph) and model_0.5/static_model.json/.pdiparams (Paddle Inference). On a CPU add
# --device cpu (it wins over the original --n_gpu 1); other extra arguments are passed on and win too.
set -euo pipefail
cd "$(dirname "$0")/.."

python -u ./export_model_msra_ner_ofa.py --model_type bert \
                --model_name_or_path ../tmp/msra_ner_ofa/model_0.5 \
                --max_seq_length 128     \
                --sub_model_output_dir ../tmp/msra_ner_ofa/model_0.5/dynamic_model \
                --static_sub_model ../tmp/msra_ner_ofa/model_0.5/static_model \
                --n_gpu 1 \
                --width_mult  0.5 "$@"
