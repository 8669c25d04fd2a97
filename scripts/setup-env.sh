#!/usr/bin/env bash
# Create (or reuse) .venv with the CPU build of torch and mirnet installed in editable mode.
# Usage: scripts/setup-env.sh [EXTRAS]   e.g. scripts/setup-env.sh test
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
    "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root${extras:+[$extras]}" >&2
    touch "$stamp"
fi
