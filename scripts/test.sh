#!/usr/bin/env bash
# Sets up the environment and runs the test suite (the README's test command; CI runs it too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
