#!/usr/bin/env bash
# The whole pipeline, shrunk to run on a 2-core CPU in a few minutes:
# generated Chinese NER data (PER/LOC/ORG/TIME) -> tiny random-init BERT teacher -> OFA over widths 1.0 and 0.5
# -> export of width 0.5 (dygraph + static) -> prediction on a sentence with the static model.
# Usage: bash scripts/run_demo_cpu.sh [WORK_DIR]   (default ./demo_run; python from $PYTHON or PATH)
# Sizes (defaults in brackets; the tests shrink them): N_TRAIN [2000] N_DEV [200] N_TEST [200]
# TEACHER_EPOCHS [8] OFA_EPOCHS [3]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-./demo_run}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

$PY demo_data.py --output_dir "$WORK" --n_train "${N_TRAIN:-2000}" --n_dev "${N_DEV:-200}" --n_test "${N_TEST:-200}"

$PY run_msra_ner.py --model_name_or_path "$WORK/tiny_bert" --data_dir "$WORK/data" --device cpu \
  --max_seq_length 64 --batch_size 32 --learning_rate 5e-3 --num_train_epochs "${TEACHER_EPOCHS:-8}" \
  --logging_steps 50 --save_steps 100 --output_dir "$WORK/teacher"

$PY run_msra_ner_ofa.py --model_type bert --model_name_or_path "$WORK/teacher/model_best" --task_name demo \
  --data_dir "$WORK/data" --device cpu --max_seq_length 64 --batch_size 32 --learning_rate 2e-3 \
  --num_train_epochs "${OFA_EPOCHS:-3}" --logging_steps 50 --save_steps 100 --width_mult_list 1.0 0.5 --output_dir "$WORK/ofa"

$PY export_model_msra_ner_ofa.py --model_type bert --model_name_or_path "$WORK/ofa/model_0.5" --max_seq_length 64 \
  --sub_model_output_dir "$WORK/export/0.5/sub_model" --static_sub_model "$WORK/export/0.5/static_sub_model/model" \
  --width_mult 0.5 --device cpu

echo "== prediction with the exported static width-0.5 model =="
$PY predict.py --model_dir "$WORK/export/0.5/static_sub_model" --text "三月五日，王伟在北京的人民银行会见了李娜。"

cat <<DONE
== artifacts ==
data:              $WORK/data/{train,dev,test}.tsv
teacher:           $WORK/teacher/model_best/   (metrics.json: dev + test P/R/F1)
OFA supernet:      $WORK/ofa/model_1.0/ $WORK/ofa/model_0.5/   summary: $WORK/ofa/summary.json
dygraph sub-model: $WORK/export/0.5/sub_model/
static sub-model:  $WORK/export/0.5/static_sub_model/model.json + model.pdiparams
DONE
