#!/usr/bin/env bash
# Train the paper preset on a lent GPU machine (the device tool), with LOL carried there in parts.
#
# Here:   .venv/bin/python scripts/pack_lol_parts.py --lol ../shared/data/LOL --out .devdata --eval15
# There, one device call each, back to back (the machine keeps /root/lol only while it stays warm):
#   bash scripts/gpu_paper_run.sh receive 1 smoke          # part 1 (validation pairs), then a smoke test
#   bash scripts/gpu_paper_run.sh receive N                # the other parts (carry .devdata/pN)
#   bash scripts/gpu_paper_run.sh train SECONDS STEPS [TRAIN OPTIONS...]    # 2026-12-04: train 460 300
# (steps run in the order given: `receive 7 train 460 300` takes the last part and trains; smoke and
# train end a command line, every word after them going to `mirnet train`).
#
# smoke runs 12 steps of the run's own command on the validation pairs, and the scoring and
# packing below on two of them, so a mistake costs seconds instead of the run. train trains for
# SECONDS in all (validation included; the cosine anneals over that time), validating every STEPS
# steps on the 65 held-out pairs and keeping the best. It writes into $OUT that checkpoint (where the
# run stopped, if none was kept) in fp16, cut into five files (cat $OUT/paper-fp16.safetensors.part*
# > paper-fp16.safetensors), and results.tgz (the run's log, metrics.csv, config.json, plots); then it
# scores the checkpoint on the held-out pairs and once on eval15 (fp32, TF32 convolutions) and adds
# both to results.tgz. A failed run still brings back its log.
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
fail() {
    echo "gpu_paper_run.sh: $*" >&2
    exit 2
}

# What comes back of a run folder: everything but checkpoints and weights (log, metrics, plots, scores).
pack() {
    if [[ -d $1 ]]; then
        tar czf "$out/results.tgz" -C "$1" --exclude='*.pt' --exclude='*.safetensors' .
    fi
}

# Bring back a run's weights in fp16 (its best checkpoint, else where it stopped) and its records first,
# so that a failure or the call's time limit while scoring still returns them; then score the weights
# on the held-out pairs and eval15 and pack the records again.
finish() {
    local run=$1 val=$2 eval15=$3 weights=$1/best.safetensors
    [[ -f $weights ]] || weights=$run/last.pt  # no validated epoch improved (or none ended)
    "$python" - "$weights" "$run/paper-fp16.safetensors" <<'EOF'
import sys
from mirnet import load_model
from mirnet.weights import read_metadata, save_weights
source, target = sys.argv[1:]
record = read_metadata(source) if source.endswith(".safetensors") else {"training": {"source": "last.pt"}}
record.pop("config", None)
save_weights(load_model(source).half(), target, metadata=record)
EOF
    (cd "$run" && sha256sum paper-fp16.safetensors | tee paper-fp16.sha256)
    split -n 5 -d "$run/paper-fp16.safetensors" "$out/paper-fp16.safetensors.part"
    pack "$run"
    mirnet evaluate --data "$val" --weights "$weights" --label paper-gpu --precision fp32 \
        --out "$run/validation" --figure 0 --summary
    mirnet evaluate --data "$eval15" --weights "$weights" --label paper-gpu --precision fp32 \
        --out "$run/eval15" --summary
    pack "$run"
    ls -l "$out"
}

# smoke and train take every word after them as options of `mirnet train`: each ends a command line.
while [[ $# -gt 0 ]]; do
    case $1 in
        receive)
            [[ $# -ge 2 && -d $parts/p${2:-} ]] || fail "receive N: no part $parts/p${2:-}"
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
            [[ $# -ge 3 ]] || fail "train SECONDS STEPS [TRAIN OPTIONS...]: the seconds and the steps per validation"
            seconds=$2 every=$3
            case $(realpath -m "$lol")/ in
                "$(realpath -m "$work")"/*) fail "WORK ($work) holds LOL ($lol), which train would delete" ;;
            esac
            rm -rf "$work" && mkdir -p "$work"
            trap 'pack "$work"' EXIT  # the log and metrics come back even if training fails
            mirnet train --data "$lol/train" --val-data "$lol/val" --out "$work" "${recipe[@]}" \
                --train-time "$seconds" --steps-per-epoch "$every" "${@:4}" 2>&1 | tee "$work/train.log"
            finish "$work" "$lol/val" "$lol/eval15"
            shift $# ;;
        *)
            fail "unknown step $1 (receive N, smoke, train SECONDS STEPS)" ;;
    esac
done
