#!/usr/bin/env bash
# Set up .venv with the test extras on first use, then run the test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
"$root/scripts/setup-env.sh" test,export
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
