#!/usr/bin/env bash
# Train the bundled default model, lol-compact, from scratch on LOL our485 in two stages:
#   1. 10,800 steps on 4 x 128x128 crops (learns local restoration cheaply);
#   2. 1,350 steps on 1 x 256x256 crop, started from stage 1's best weights (the same pixels per step
#      but 4x the context per crop, for the global exposure that the channel attention pools).
# Each stage validates on held-out our485 scenes and keeps its best checkpoint. Run it again to
# resume after an interruption: a stage that has a checkpoint continues, a finished stage is skipped.
#
#   scripts/train_lol_compact.sh [OUR485_FOLDER] [RUN_FOLDER]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/../shared/data/LOL/our485}"
out="${2:-runs/lol-compact}"

stage() {  # stage FOLDER ARGS...: train, or resume the run already in FOLDER
    local folder=$1
    shift
    if [[ -f "$folder/last.pt" ]]; then
        "$root/run.sh" train --out "$folder" --resume
    else
        "$root/run.sh" train --out "$folder" "$@"
    fi
}

common=(--data "$data" --preset compact --augment --schedule cosine)
stage "$out/stage1" "${common[@]}" --epochs 15 --steps-per-epoch 720 --lr 5e-4 --warmup-steps 200 --val-limit 32
stage "$out/stage2" "${common[@]}" --init "$out/stage1/best.safetensors" --crop 256 --batch-size 1 \
    --epochs 3 --steps-per-epoch 450 --lr 2e-4 --warmup-steps 50 --ssim-weight 0.5 --val-limit 64
