#!/usr/bin/env bash
# Variants of lol-compact's first stage (recipe v2, the default until 2026-11-30), each followed by
# the shipped second stage from its own best weights (mixup applies to stage 1 only: stage 2's
# batch of one crop has no second pair to blend with), all holding out the same our485 scenes (never
# eval15). Run it again to resume: a finished stage is skipped, an interrupted one continues.
#
#   scripts/stage1_variants.sh [OUR485_FOLDER] [OUT_FOLDER] [VARIANT...]
#
# Variants: ema (a 0.999 moving average of the weights is validated and kept in stage 1), short (a
# 12-epoch cosine instead of 18, validated on 64 held-out pairs instead of 32), lr1e-3 (twice the
# peak learning rate), mixup (half the batches blend their pairs, --mixup 0.5), reduction2 (channel
# attention and SKFF squeeze by 2 instead of 8: with 8, the first stream's 16 channels squeeze to 2
# values where the paper's 64 squeeze to 8; by 2 they squeeze to 8 again, at the same 18.9 GMACs),
# quick (both stages at train_lol_compact.sh --quick's steps, 10 x 1,100 and 4 x 400: a variant's
# measure within about 2 hours on the slowest CPU seen, against that recipe's run, docs/results/quick/).
# Variants combine with +: lr1e-3 is recipe v3 (the recipe of the default since 2026-11-30), so
# lr1e-3+reduction2 is reduction2 on v3.
# Compare them with scripts/compare_recipes.py and scripts/compare_on_validation.py (README, Trained
# models).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/../shared/data/LOL/our485}"
out="${2:-runs/stage1-variants}"
variants=("${@:3}")
[[ ${#variants[@]} -gt 0 ]] || variants=(ema short)

common=(--data "$data" --preset compact --augment --schedule cosine --val-pairs 64 --ssim-weight 0.5 --precision fp32)
shipped1=(--epochs 18 --steps-per-epoch 1200 --lr 5e-4 --warmup-steps 200 --val-limit 32)
shipped2=(--crop 256 --batch-size 1 --epochs 6 --steps-per-epoch 450 --lr 2e-4 --warmup-steps 50 --val-limit 64)

source "$root/scripts/stage.sh"

for name in "${variants[@]}"; do
    change=() change2=() model=()  # change2: the second stage's; model: a configuration change, which both need
    for part in ${name//+/ }; do
        case $part in  # each variant: what it changes in stage 1 (a later option overrides the shipped one)
            ema) change+=(--ema 0.999) ;;
            short) change+=(--epochs 12 --val-limit 64) ;;
            lr1e-3) change+=(--lr 1e-3) ;;
            mixup) change+=(--mixup 0.5) ;;
            reduction2) model+=(--model-config '{"reduction": 2}') ;;
            quick)
                change+=(--epochs 10 --steps-per-epoch 1100)
                change2+=(--epochs 4 --steps-per-epoch 400) ;;
            *) echo "unknown variant $part (ema, short, lr1e-3, mixup, reduction2, quick; combined with +)" >&2; exit 2 ;;
        esac
    done
    stage "$out/$name/stage1" "${common[@]}" "${shipped1[@]}" "${change[@]}" "${model[@]}"
    stage "$out/$name/stage2" "${common[@]}" "${shipped2[@]}" "${change2[@]}" "${model[@]}" --init "$out/$name/stage1/best.safetensors"
done
