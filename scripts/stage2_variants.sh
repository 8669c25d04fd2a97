#!/usr/bin/env bash
# Variants of lol-compact's second stage (recipe v2), each started from the same stage 1 weights and
# validated on the same 64 held-out our485 pairs as the shipped stage 2 (never eval15). Run it again
# to resume: a finished variant is skipped, an interrupted one continues.
#
#   scripts/stage2_variants.sh [OUR485_FOLDER] [STAGE1_BEST] [OUT_FOLDER] [VARIANT...]
#
# Variants: ema (a 0.999 moving average of the weights is validated and kept), crop384 (2,400 steps
# of 384x384 crops: 2.25x the pixels per step), psnr-loss (minus each crop's PSNR in dB, with
# 50 x (1 - SSIM) to weigh SSIM about as the shipped loss does), long (twice the steps).
# Compare them with scripts/compare_recipes.py on their metrics.csv (README, Trained models).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/../shared/data/LOL/our485}"
init="${2:-runs/lol-compact/stage1/best.safetensors}"
out="${3:-runs/stage2-variants}"
variants=("${@:4}")
[[ ${#variants[@]} -gt 0 ]] || variants=(ema crop384 psnr-loss long)

source "$root/scripts/stage.sh"
common=(--data "$data" --preset compact --augment --schedule cosine --val-pairs 64 --val-limit 64
        --precision fp32 --init "$init" --batch-size 1 --lr 2e-4 --warmup-steps 50)
shipped=(--crop 256 --epochs 6 --steps-per-epoch 450 --ssim-weight 0.5)  # the shipped stage 2

for name in "${variants[@]}"; do
    case $name in  # each variant: what it changes (a later option overrides the shipped one)
        ema) change=(--ema 0.999) ;;
        crop384) change=(--crop 384 --steps-per-epoch 400) ;;
        psnr-loss) change=(--loss psnr --ssim-weight 50) ;;
        long) change=(--epochs 12) ;;
        *) echo "unknown variant $name (ema, crop384, psnr-loss, long)" >&2; exit 2 ;;
    esac
    stage "$out/$name" "${common[@]}" "${shipped[@]}" "${change[@]}"
done
