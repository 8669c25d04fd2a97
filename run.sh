#!/usr/bin/env bash
# Set up .venv on first use, then run the mirnet command with the given arguments.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
"$root/scripts/setup-env.sh"
exec "$root/.venv/bin/mirnet" "$@"
