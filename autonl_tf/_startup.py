"""Quiet start-up of TensorFlow for the command-line tools (no autonl_tf imports)."""

from __future__ import annotations

import os
import re
import sys

# TensorFlow's start-up lines on a machine without an NVIDIA driver: the CUDA probe ("failed call
# to cuInit"), CPU-feature and oneDNN notices. They go through a C++ logger that ignores
# TF_CPP_MIN_LOG_LEVEL, before Python can configure anything.
_STARTUP_NOISE = re.compile(
    r"cuda_platform\.cc|cudart_stub\.cc|cuda_dnn\.cc|cuda_fft\.cc|cuda_blas\.cc|"
    r"cpu_feature_guard\.cc|To enable the following instructions|oneDNN custom operations|"
    r"All log messages before absl::InitializeLog|Unable to register cu|computation_placer|"
    r"TF-TRT Warning|oneDNN supports DT_HALF")


def _has_nvidia_driver() -> bool:
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")


def quiet_tensorflow_startup() -> None:
    """Imports TensorFlow and probes its devices with stderr captured, dropping the CUDA-probe
    noise; every other line is passed on. Only where no NVIDIA driver exists (on a GPU machine
    those lines matter) and before TensorFlow is loaded; otherwise does nothing."""
    if "tensorflow" in sys.modules or _has_nvidia_driver():
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe happens here
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
                if not _STARTUP_NOISE.search(line)]
    sys.stderr.write("".join(kept))
    sys.stderr.flush()
