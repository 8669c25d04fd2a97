#!/usr/bin/env bash
# Train a compact MIRNet from scratch on LOL our485 in two stages. The bundled default, lol-compact v6
# (2026-12-05), is two streams with stage 1 on batches of 2 crops (under 2 hours on the slowest 2-core CPU
# seen, an Ice Lake Xeon in fp32):
#   scripts/train_lol_compact.sh --background --steps 15x2170,7x462 OUR485 RUN --split full --precision fp32 \
#       --batch-size 2 --model-config '{"num_streams": 2}'
# With no recipe option the script trains the recipe of v3-v5 (the default until 2026-12-05):
#   1. 21,600 steps on 4 x 128x128 crops at a peak lr of 1e-3 (learns local restoration cheaply);
#   2. 2,700 steps on 1 x 256x256 crop, started from stage 1's best weights (the same pixels per step
#      but 4x the context per crop, for the global exposure that the channel attention pools).
# Both stages add 0.5 x (1 - SSIM) to the Charbonnier loss. By default they hold out 65 pairs of
# our485 by whole scenes (420 left to train on), validate on held-out scenes only (never eval15) and
# keep their best checkpoint; with --split full they train on all 485 pairs, and each stage keeps
# where it ended. Run it again to resume after an interruption: a stage that has a checkpoint
# continues, a finished stage resumes and ends at once. This is recipe v3 (2026-11-30); v2, the default before it,
# peaked at lr 5e-4 in stage 1 (git show 44655fd:scripts/train_lol_compact.sh). v4 was this recipe
# with --precision bf16; v5 was that with --split full.
#
# --quick runs the same two stages with fewer steps, sized for 2 hours of compute on the slowest 2-core
# CPU seen here (an Ice Lake Xeon, fp32 + channels_last; 2026-12-02 it took 120.1 min there):
#   1. 11,000 steps (10 epochs of 1,100) instead of 21,600;  2. 1,600 (4 of 400) instead of 2,700.
# It scores about 0.5 dB below the full recipe on held-out pairs (docs/results/quick/).
#
# --budget DURATION (e.g. 2h, 90m) fits the two stages into that much time on whatever CPU runs them: each
# stage trains for its share of it (stage 1 five sixths, stage 2 one sixth, near --quick's 99/21 minutes;
# the full recipe gives stage 1 about seven eighths), less a minute each for start-up and the
# validation after the time runs out, which the stage's clock does not count. Its cosine anneals over
# that time rather than over a number of steps (`mirnet train --train-time`); a faster CPU takes more
# steps.
#
# --steps E1xN1,E2xN2 gives each stage's steps as EPOCHSxSTEPS_PER_EPOCH, e.g. to repeat the steps a
# --budget run took (its metrics.csv) on another CPU, or a recipe of another length.
#
# Usage:
#   scripts/train_lol_compact.sh [--background] [--quick | --budget DURATION | --steps E1xN1,E2xN2]
#       [OUR485_FOLDER] [RUN_FOLDER] [TRAIN OPTIONS...]
#
# Further options go to both stages' `mirnet train` (e.g. --precision fp32). A resumed stage is
# given them again: options that change how it runs (--precision, --device, --compile,
# --checkpoint-every) take effect, and any other option must equal the one it started with, else
# the stage refuses to resume. --background detaches the run from the terminal (it survives a
# closed shell), appends its output to RUN_FOLDER/train.log and returns at once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
background=false
recipe=()
fail() {
    echo "train_lol_compact.sh: error: $*" >&2
    exit 2
}
while [[ "${1:-}" == --background || "${1:-}" == --quick || "${1:-}" == --budget || "${1:-}" == --steps ]]; do
    case "$1" in
        --background) background=true ;;
        --quick) recipe+=(--quick) ;;
        --budget)
            [[ $# -ge 2 ]] || fail "--budget: expected a duration such as 2h or 90m"
            recipe+=(--budget "$2")
            shift ;;
        --steps)
            [[ $# -ge 2 ]] || fail "--steps: expected each stage's EPOCHSxSTEPS_PER_EPOCH, such as 18x1200,6x450"
            recipe+=(--steps "$2")
            shift ;;
    esac
    shift
done
data="${1:-$root/../shared/data/LOL/our485}"
out="${2:-runs/lol-compact}"
extra=("${@:3}")

# The recipe is checked before --background detaches, so a mistake is reported in the terminal.
if [[ ${#recipe[@]} -eq 0 ]]; then
    stage1_steps=(--epochs 18 --steps-per-epoch 1200)
    stage2_steps=(--epochs 6 --steps-per-epoch 450)
elif [[ ${#recipe[@]} -eq 1 ]]; then
    stage1_steps=(--epochs 10 --steps-per-epoch 1100)
    stage2_steps=(--epochs 4 --steps-per-epoch 400)
elif [[ ${#recipe[@]} -eq 2 && ${recipe[0]} == --budget ]]; then
    budget="${recipe[1]}"
    [[ "$budget" =~ ^[0-9]+(\.[0-9]+)?[hms]?$ ]] ||
        fail "--budget: expected a duration such as 2h or 90m, got '$budget'"
    case "$budget" in
        *h) seconds=$(awk -v v="${budget%h}" 'BEGIN { print v * 3600 }') ;;
        *m) seconds=$(awk -v v="${budget%m}" 'BEGIN { print v * 60 }') ;;
        *) seconds=$(awk -v v="${budget%s}" 'BEGIN { print v + 0 }') ;;
    esac
    awk -v s="$seconds" 'BEGIN { exit !(s >= 720) }' ||
        fail "--budget: expected a duration of at least 12m, got '$budget'"
    # Less a minute per stage for loading the data and the model and for the validation after
    # the time runs out, which the stage's own clock does not count.
    stage1_steps=(--train-time "$(awk -v s="$seconds" 'BEGIN { print int(s * 5 / 6 - 60) }')" --steps-per-epoch 1200)
    stage2_steps=(--train-time "$(awk -v s="$seconds" 'BEGIN { print int(s / 6 - 60) }')" --steps-per-epoch 450)
elif [[ ${#recipe[@]} -eq 2 && ${recipe[0]} == --steps ]]; then
    [[ "${recipe[1]}" =~ ^([1-9][0-9]*)x([1-9][0-9]*),([1-9][0-9]*)x([1-9][0-9]*)$ ]] ||
        fail "--steps: expected each stage's EPOCHSxSTEPS_PER_EPOCH, such as 18x1200,6x450, got '${recipe[1]}'"
    stage1_steps=(--epochs "${BASH_REMATCH[1]}" --steps-per-epoch "${BASH_REMATCH[2]}")
    stage2_steps=(--epochs "${BASH_REMATCH[3]}" --steps-per-epoch "${BASH_REMATCH[4]}")
else
    fail "give at most one recipe: --quick, --budget DURATION or --steps E1xN1,E2xN2, once"
fi

if $background; then
    mkdir -p "$out"
    nohup "$0" "${recipe[@]}" "$data" "$out" "${extra[@]}" >>"$out/train.log" 2>&1 </dev/null &
    echo "training in the background (pid $!); log: $out/train.log"
    echo "after an interruption, the same command resumes it"
    exit 0
fi

source "$root/scripts/stage.sh"

common=(--data "$data" --preset compact --augment --schedule cosine --val-pairs 64 --ssim-weight 0.5 "${extra[@]}")
echo "$(date -u '+%F %T UTC'): ${recipe[*]:-full recipe}, $out"
stage "$out/stage1" "${common[@]}" "${stage1_steps[@]}" --lr 1e-3 --warmup-steps 200 --val-limit 32
stage "$out/stage2" "${common[@]}" --init "$out/stage1/best.safetensors" --crop 256 --batch-size 1 \
    "${stage2_steps[@]}" --lr 2e-4 --warmup-steps 50 --val-limit 64
echo "$(date -u '+%F %T UTC'): both stages done, $out"
