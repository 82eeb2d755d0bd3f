#!/usr/bin/env bash
# Run a quickstart script in the harness container with Intel's interface:
#
#   PRECISION=bf16 OUTPUT_DIR=/runs/p1 DATASET_DIR=/data CONFIG_FILE=/cfg/bert_config.json ./run.sh
#   CHECKPOINT_DIR=/runs/p1/model_save OUTPUT_DIR=/runs/p2 SCRIPT=run_bert_pretrain_phase2.sh ./run.sh
#
# Required: PRECISION, OUTPUT_DIR, DATASET_DIR, and CONFIG_FILE (phase 1: a bert_config.json or a
#           named config such as bert-large) or CHECKPOINT_DIR (phase 2: phase 1's model_save, or
#           a TensorFlow checkpoint's prefix such as MLCommons' wiki/tf1_ckpt/model.ckpt-28252).
# Optional: SCRIPT (run_bert_pretrain_phase1.sh or run_bert_pretrain_phase2.sh; default phase 1),
#           IMAGE (default harness:latest, built from this folder's Dockerfile), TRAIN_STEPS,
#           BATCH_SIZE, BACKEND, HARNESS_ARGS (passed into the container), DOCKER (default docker).
#
# Host folders are mounted at the same paths inside the container, so the paths phase 1 writes
# (OUTPUT_DIR/model_save) are the ones phase 2 is given. The dataset and a config file are
# mounted read-only.
set -euo pipefail

SCRIPT=${SCRIPT:-run_bert_pretrain_phase1.sh}
case "$SCRIPT" in
    run_bert_pretrain_phase1.sh) needed=(PRECISION OUTPUT_DIR DATASET_DIR CONFIG_FILE) ;;
    run_bert_pretrain_phase2.sh) needed=(PRECISION OUTPUT_DIR DATASET_DIR CHECKPOINT_DIR) ;;
    *) echo "run.sh: SCRIPT=$SCRIPT: expected run_bert_pretrain_phase1.sh or run_bert_pretrain_phase2.sh" >&2
       exit 2 ;;
esac
status=0
for var in "${needed[@]}"; do
    if [[ -z "${!var:-}" ]]; then
        case "$var" in
            PRECISION) what="the precision mode: fp32, avx-fp32, bf16, bf32 or avx-bf16" ;;
            OUTPUT_DIR) what="a host folder for logs, results and model_save (empty or new)" ;;
            DATASET_DIR) what="the host folder holding seq_128/ and seq_512/ TFRecords" ;;
            CONFIG_FILE) what="a bert_config.json on the host, or a named config such as bert-large" ;;
            CHECKPOINT_DIR) what="phase 1's OUTPUT_DIR/model_save on the host, or a TensorFlow checkpoint's prefix" ;;
        esac
        echo "run.sh: $var is not set: $what" >&2
        status=2
    fi
done
((status == 0)) || exit "$status"
if [[ ! -d "$DATASET_DIR" ]]; then
    echo "run.sh: DATASET_DIR=$DATASET_DIR: no such folder" >&2
    exit 2
fi
if [[ -n "${CHECKPOINT_DIR:-}" && ! -d "$CHECKPOINT_DIR" && ! -f "$CHECKPOINT_DIR.index" ]]; then
    echo "run.sh: CHECKPOINT_DIR=$CHECKPOINT_DIR: no such folder (phase 1 writes OUTPUT_DIR/model_save)," \
         "nor a TensorFlow checkpoint's prefix (no $CHECKPOINT_DIR.index)" >&2
    exit 2
fi
mkdir -p "$OUTPUT_DIR"

absolute() { (cd "$1" && pwd -P); }
OUTPUT_DIR=$(absolute "$OUTPUT_DIR")
DATASET_DIR=$(absolute "$DATASET_DIR")
args=(run --rm --init --shm-size 1g
      -v "$DATASET_DIR:$DATASET_DIR:ro" -v "$OUTPUT_DIR:$OUTPUT_DIR"
      -e "PRECISION=$PRECISION" -e "OUTPUT_DIR=$OUTPUT_DIR" -e "DATASET_DIR=$DATASET_DIR")
if [[ "$SCRIPT" == run_bert_pretrain_phase1.sh ]]; then
    if [[ -f "$CONFIG_FILE" ]]; then  # else a named config, resolved inside
        CONFIG_FILE="$(absolute "$(dirname "$CONFIG_FILE")")/$(basename "$CONFIG_FILE")"
        args+=(-v "$CONFIG_FILE:$CONFIG_FILE:ro")
    fi
    args+=(-e "CONFIG_FILE=$CONFIG_FILE")
elif [[ -d "$CHECKPOINT_DIR" ]]; then
    CHECKPOINT_DIR=$(absolute "$CHECKPOINT_DIR")
    args+=(-v "$CHECKPOINT_DIR:$CHECKPOINT_DIR:ro" -e "CHECKPOINT_DIR=$CHECKPOINT_DIR")
else  # a TensorFlow checkpoint's prefix: its folder, and the bert_config.json the harness looks for
    folder=$(absolute "$(dirname "$CHECKPOINT_DIR")")
    CHECKPOINT_DIR="$folder/$(basename "$CHECKPOINT_DIR")"
    args+=(-v "$folder:$folder:ro" -e "CHECKPOINT_DIR=$CHECKPOINT_DIR")
    above="$(dirname "$folder")/bert_config.json"  # MLCommons' layout: beside tf1_ckpt/
    if [[ ! -f "$folder/bert_config.json" && -f "$above" ]]; then
        args+=(-v "$above:$above:ro")
    fi
fi
for var in TRAIN_STEPS BATCH_SIZE BACKEND HARNESS_ARGS; do
    [[ -z "${!var:-}" ]] || args+=(-e "$var=${!var}")
done
exec "${DOCKER:-docker}" "${args[@]}" "${IMAGE:-harness:latest}" bash "quickstart/$SCRIPT"
