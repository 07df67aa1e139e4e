#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs autonl_tf with the versions pinned in pyproject.toml.
# Idempotent: reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: autonl_tf needs Python 3.11 (found $("$python" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$python" -m venv .venv
fi
# AUTONL_EXTRAS=tpu adds the Cloud TPU client (TPUClusterResolver needs it for --tpu=<name>).
extras=dev${AUTONL_EXTRAS:+,$AUTONL_EXTRAS}
stamp=.venv/.autonl_tf-installed-${extras//,/-}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing autonl_tf[$extras] and its pinned dependencies (first time: a few minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
  touch "$stamp"
fi
