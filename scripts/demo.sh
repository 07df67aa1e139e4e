#!/usr/bin/env bash
# Sets up the environment and runs the whole AutoNL pipeline on the embedded dataset:
# search under a MACs target -> arch.txt -> retrain -> evaluate -> SavedModel + TFLite (verified).
# Extra arguments go to `python -m autonl_tf.pipeline` (e.g. --smoke, --workdir=DIR, --target_flops=N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/python -m autonl_tf.pipeline "$@"
