#!/usr/bin/env bash
# Train the paper preset on a lent GPU machine (the device tool), with LOL carried there in parts.
#
# Here:   .venv/bin/python scripts/pack_lol_parts.py --lol ../shared/data/LOL --out .devdata --eval15
# There, one device call each, back to back (the machine keeps /root/lol only while it stays warm):
#   bash scripts/gpu_paper_run.sh receive 1 smoke          # part 1 (validation pairs), then a smoke test
#   bash scripts/gpu_paper_run.sh receive N                # the other parts (carry .devdata/pN)
#   bash scripts/gpu_paper_run.sh train SECONDS STEPS [TRAIN OPTIONS...]    # 2026-12-04: train 460 300
# (steps run in the order given: `receive 7 train 460 300` takes the last part and trains).
#
# smoke runs 12 steps of the run's own command on the validation pairs, and the scoring and
# packing below on two of them, so a mistake costs seconds instead of the run. train trains for
# SECONDS in all (validation included; the cosine anneals over that time), validating every STEPS steps
# on the 65 held-out pairs and keeping the best; then it scores that checkpoint on the held-out
# pairs and once on eval15 (fp32, TF32 convolutions), and writes into $OUT the best weights in
# fp16, cut into five files (cat $OUT/paper-fp16.safetensors.part* > paper-fp16.safetensors), and
# results.tgz (the run's log, metrics.csv, config.json, plots and both evaluations).
#
# The recipe is the paper's (128x128 crops, batch 16, Adam at 2e-4 annealed by a cosine) with this
# project's loss (Charbonnier + 0.5 x (1 - SSIM), as the CPU models) and flips/rotations.
# PARTS (default .devdata), LOL (/root/lol), WORK (/root/paper-gpu), PYTHON (python3) and extra TRAIN
# OPTIONS (e.g. --channels 4 --device cpu, which override the recipe's) are for trying it elsewhere.
set -euo pipefail
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src" PYTHONUNBUFFERED=1
parts=${PARTS:-.devdata}
lol=${LOL:-/root/lol}
work=${WORK:-/root/paper-gpu}
python=${PYTHON:-python3}  # the device machine's python3 holds its torch
out=${OUT:?OUT: the folder whose files come back}
recipe=(--preset paper --crop 128 --batch-size 16 --augment --lr 2e-4 --schedule cosine --warmup-steps 100
        --ssim-weight 0.5 --seed 0)
mirnet() { "$python" -m mirnet "$@"; }

# Score a run's best checkpoint on the held-out pairs and eval15, and pack what comes back.
finish() {
    local run=$1 val=$2 eval15=$3
    mirnet evaluate --data "$val" --weights "$run/best.safetensors" --label paper-gpu --precision fp32 \
        --out "$run/validation" --figure 0 --summary
    mirnet evaluate --data "$eval15" --weights "$run/best.safetensors" --label paper-gpu --precision fp32 \
        --out "$run/eval15" --summary
    "$python" - "$run/best.safetensors" "$run/paper-fp16.safetensors" <<'EOF'
import sys
from mirnet.weights import load_weights, read_metadata, save_weights
record = read_metadata(sys.argv[1])
record.pop("config")
save_weights(load_weights(sys.argv[1]).half(), sys.argv[2], metadata=record)
EOF
    sha256sum "$run/paper-fp16.safetensors" | tee "$run/paper-fp16.sha256"
    split -n 5 -d "$run/paper-fp16.safetensors" "$out/paper-fp16.safetensors.part"
    tar czf "$out/results.tgz" -C "$run" --exclude='*.pt' --exclude='*.safetensors' .
    ls -l "$out"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        receive)
            mkdir -p "$lol"
            cp -a "$parts/p$2/." "$lol/"
            for folder in "$lol"/*/low; do echo "$(dirname "$folder"): $(ls "$folder" | wc -l) pairs"; done
            shift 2 ;;
        smoke)
            nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
            "$python" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'
            smoke=$work-smoke
            rm -rf "$smoke" && mkdir -p "$smoke"/data/{low,high}
            for name in $(ls "$lol/val/low" | head -2); do
                ln -s "$lol/val/low/$name" "$smoke/data/low/"
                ln -s "$lol/val/high/$name" "$smoke/data/high/"
            done
            mirnet train --data "$lol/val" --val-data "$smoke/data" --out "$smoke/run" "${recipe[@]}" \
                --max-steps 12 --epochs 2 --steps-per-epoch 6 "${@:2}"
            finish "$smoke/run" "$smoke/data" "$smoke/data"
            shift $# ;;
        train)
            seconds=$2 every=$3
            rm -rf "$work" && mkdir -p "$work"
            mirnet train --data "$lol/train" --val-data "$lol/val" --out "$work" "${recipe[@]}" \
                --train-time "$seconds" --steps-per-epoch "$every" "${@:4}" 2>&1 | tee "$work/train.log"
            finish "$work" "$lol/val" "$lol/eval15"
            shift $# ;;
        *)
            echo "gpu_paper_run.sh: unknown step $1" >&2
            exit 2 ;;
    esac
done
