#!/usr/bin/env bash
# BERT pre-training phase 2: max_seq_len 512 on the last 10% of DATASET_DIR/seq_512's shards,
# continuing from phase 1's model_save. The architecture comes from CHECKPOINT_DIR/config.json.
# CHECKPOINT_DIR may also be a TensorFlow checkpoint's prefix, such as MLCommons'
# wiki/tf1_ckpt/model.ckpt-28252; its architecture is the bert_config.json beside it or in the
# folder above (docs/checkpoints.md).
#
# Required: PRECISION, OUTPUT_DIR (empty or new), DATASET_DIR, CHECKPOINT_DIR (phase 1's
#           ${OUTPUT_DIR}/model_save, or a TensorFlow checkpoint's prefix).
# Optional: TRAIN_STEPS (default 100), BATCH_SIZE (default 2), BACKEND (stock, fused or ipex;
#           default stock), PYTHON (default python3), HARNESS_ARGS (more `python -m harness train`
#           flags, word-split).
set -euo pipefail

missing=()
for var in PRECISION OUTPUT_DIR DATASET_DIR CHECKPOINT_DIR; do
    [[ -n "${!var:-}" ]] || missing+=("$var")
done
if ((${#missing[@]})); then
    echo "run_bert_pretrain_phase2.sh: ${missing[*]} not set; phase 2 needs PRECISION, OUTPUT_DIR," \
         "DATASET_DIR and CHECKPOINT_DIR (phase 1's OUTPUT_DIR/model_save; optional: TRAIN_STEPS," \
         "BATCH_SIZE, HARNESS_ARGS)" >&2
    exit 2
fi

# shellcheck disable=SC2086  # HARNESS_ARGS is a list of flags on purpose
exec "${PYTHON:-python3}" -m harness train --phase 2 --precision "$PRECISION" \
    --dataset "$DATASET_DIR" --output "$OUTPUT_DIR" --checkpoint "$CHECKPOINT_DIR" \
    --steps "${TRAIN_STEPS:-100}" --batch-size "${BATCH_SIZE:-2}" --backend "${BACKEND:-stock}" \
    ${HARNESS_ARGS:-}
