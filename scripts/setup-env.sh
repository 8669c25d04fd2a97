#!/usr/bin/env bash
# Create (or reuse) .venv with the CPU build of torch and mirnet installed in editable mode.
# Usage: scripts/setup-env.sh [EXTRAS]   e.g. scripts/setup-env.sh baselines
# PYTHON names the interpreter that creates .venv (default python3); TORCH_INDEX_URL, the index torch
# comes from (e.g. https://download.pytorch.org/whl/cpu where PyPI's default torch is a CUDA build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.mirnet-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root${extras:+[$extras]}" >&2
    touch "$stamp"
fi
