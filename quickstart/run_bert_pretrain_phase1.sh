#!/usr/bin/env bash
# BERT pre-training phase 1: max_seq_len 128 on the first 90% of DATASET_DIR/seq_128's shards.
# The model is saved to ${OUTPUT_DIR}/model_save, the CHECKPOINT_DIR of phase 2.
#
# Required: PRECISION (fp32, bf16, ...), OUTPUT_DIR (empty or new), DATASET_DIR, CONFIG_FILE
#           (a bert_config.json, or a named config such as bert-large).
# Optional: TRAIN_STEPS (default 100), BATCH_SIZE (default 8), BACKEND (stock, fused or ipex;
#           default stock), PYTHON (default python3), HARNESS_ARGS (more `python -m harness train`
#           flags, word-split).
set -euo pipefail

missing=()
for var in PRECISION OUTPUT_DIR DATASET_DIR CONFIG_FILE; do
    [[ -n "${!var:-}" ]] || missing+=("$var")
done
if ((${#missing[@]})); then
    echo "run_bert_pretrain_phase1.sh: ${missing[*]} not set; phase 1 needs PRECISION, OUTPUT_DIR," \
         "DATASET_DIR and CONFIG_FILE (optional: TRAIN_STEPS, BATCH_SIZE, HARNESS_ARGS)" >&2
    exit 2
fi

# shellcheck disable=SC2086  # HARNESS_ARGS is a list of flags on purpose
exec "${PYTHON:-python3}" -m harness train --phase 1 --precision "$PRECISION" --model "$CONFIG_FILE" \
    --dataset "$DATASET_DIR" --output "$OUTPUT_DIR" --steps "${TRAIN_STEPS:-100}" \
    --batch-size "${BATCH_SIZE:-8}" --backend "${BACKEND:-stock}" ${HARNESS_ARGS:-}
