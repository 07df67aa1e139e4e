"""autonl_tf: AutoNL (Neural Architecture Search for Lightweight Non-Local Networks, CVPR 2020)
on TensorFlow 2 / Keras 3."""

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries the output of our
# command-line tools; keep warnings and errors. Users can still override the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Commands that load nothing of TensorFlow before their flags are checked: the profiler never
# needs it; the programs and the pipeline (autonl_tf.runner.cli.parse_flags) and the export load
# it quietly once the flags are fine.
_PARSE_BEFORE_TENSORFLOW = ("autonl_tf.profile", "autonl_tf.pipeline", "autonl_tf.export",
                            "autonl_tf.search_main", "autonl_tf.train_main", "autonl_tf.eval_main")


def _command_module() -> str | None:
    """The module ``x`` of ``python -m x`` (the interpreter's own command line), else None."""
    argv = getattr(sys, "orig_argv", [])
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None


if sys.argv[:1] == ["-m"] and _command_module() not in _PARSE_BEFORE_TENSORFLOW:
    # `python -m autonl_tf.<command>` (Python sets argv[0] to '-m' while it imports the
    # package) whose modules import TensorFlow: drop the CUDA-probe noise of its start-up
    # before anything loads it.
    from autonl_tf._startup import quiet_tensorflow_startup

    quiet_tensorflow_startup()

__version__ = "0.1.0"
