#!/usr/bin/env bash
# Third stages for lol-compact v2 (shipped 2026-11-25 to 11-30, when these were measured), each
# fine-tuning its weights and validated on the 64 held-out our485 pairs it never trained on (never
# eval15). Run it again to resume: a finished variant is skipped, an interrupted one continues.
#
#   scripts/stage3_variants.sh [OUR485_FOLDER] [OUT_FOLDER] [VARIANT...]
#
# v2's weights are taken from the repository's history (commit 8a359fb) into OUT_FOLDER/v2.safetensors;
# INIT=WEIGHTS starts from other weights instead. The bundled lol-compact (v5) trained on every pair
# of our485, so `mirnet train` refuses it here: it would validate on pairs it has seen.
#
# Variants:
#   untied     the third stage tried before with shared weights (2,700 steps of 1 x 256x256 crops,
#              lr 1e-4; README, Trained models), with the weight sharing untied: every use of a
#              shared module starts from its own copy of the shared weights (the same function,
#              460,592 instead of 333,392 parameters, the same GMACs), so the two differ only there.
#   calibrate  600 steps of 16 x 128x128 crops at lr 5e-5: every step sees 16 images, where the
#              shipped second stage saw one, so the global exposure the model settles on is
#              averaged over many scenes; the low rate keeps what the model has learned.
#   exposure   the shared-weights third stage (1 x 256x256 crops, lr 1e-4) with each low-light crop
#              multiplied by a gain between 1/2 and 2 (--exposure-jitter 2): LOL's references do not
#              follow their inputs' brightness, and this teaches the model the same.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/../shared/data/LOL/our485}"
out="${2:-runs/stage3-variants}"
variants=("${@:3}")
[[ ${#variants[@]} -gt 0 ]] || variants=(untied calibrate exposure)

source "$root/scripts/stage.sh"
init="${INIT:-$out/v2.safetensors}"
if [[ -z "${INIT:-}" && ! -f "$init" ]]; then
    mkdir -p "$out"
    git -C "$root" show 8a359fb:src/mirnet/pretrained/lol-compact.safetensors > "$init.partial"
    mv "$init.partial" "$init"
fi
common=(--data "$data" --preset compact --init "$init" --augment --schedule cosine --val-pairs 64
        --val-limit 64 --ssim-weight 0.5 --precision fp32)

for name in "${variants[@]}"; do
    case $name in
        untied) recipe=(--model-config '{"share_weights": false}' --crop 256 --batch-size 1 --epochs 6
                        --steps-per-epoch 450 --lr 1e-4 --warmup-steps 50) ;;
        calibrate) recipe=(--crop 128 --batch-size 16 --epochs 4 --steps-per-epoch 150 --lr 5e-5
                           --warmup-steps 20) ;;
        exposure) recipe=(--exposure-jitter 2 --crop 256 --batch-size 1 --epochs 6 --steps-per-epoch 450
                          --lr 1e-4 --warmup-steps 50) ;;
        *) echo "unknown variant $name (untied, calibrate, exposure)" >&2; exit 2 ;;
    esac
    stage "$out/$name" "${common[@]}" "${recipe[@]}"
done
