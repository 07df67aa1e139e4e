"""Shared command-line plumbing of train_main.py and eval_main.py: strategy flags, clean errors."""

from __future__ import annotations

import contextlib
import os
import re
import sys

from absl import flags

__all__ = ["define_strategy_flags", "exit_on_user_errors", "parse_flags", "strategy_from_flags"]


def define_strategy_flags() -> None:
    """--tpu, --tpu_zone, --gcp_project, --num_gpus, --num_cpu_replicas (Cloud TPU style)."""
    flags.DEFINE_string("tpu", None, "Cloud TPU name or grpc:// address; 'local' on a TPU VM. "
                        "Unset: GPUs, then CPU; TF_CONFIG with several tasks: multi-worker.")
    flags.DEFINE_string("tpu_zone", None, "GCE zone of the Cloud TPU (default: from metadata).")
    flags.DEFINE_string("gcp_project", None, "GCP project of the Cloud TPU (default: metadata).")
    flags.DEFINE_integer("num_gpus", None, "Use at most this many local GPUs (default: all).",
                         lower_bound=0)
    flags.DEFINE_integer("num_cpu_replicas", 0, "Without TPU/GPU: MirroredStrategy over this "
                         "many logical CPU devices (0/1 = a single CPU replica).", lower_bound=0)


def strategy_from_flags():
    from autonl_tf.training.strategy import create_strategy

    f = flags.FLAGS
    return create_strategy(tpu=f.tpu, tpu_zone=f.tpu_zone, gcp_project=f.gcp_project,
                           num_gpus=f.num_gpus, num_cpu_replicas=f.num_cpu_replicas)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story: printed as one line, no traceback."""
    from autonl_tf.arch import ArchError
    from autonl_tf.data import DataError
    from autonl_tf.training.checkpoints import CheckpointMismatchError, NoCheckpointError
    from autonl_tf.training.config import ConfigError
    from autonl_tf.training.strategy import StrategyError

    errors: list[type[BaseException]] = [ArchError, DataError, ConfigError, StrategyError,
                                         CheckpointMismatchError, NoCheckpointError]
    try:
        from autonl_tf.export import ExportError
        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


@contextlib.contextmanager
def exit_on_user_errors(program: str | None = None):
    """Turns the library's user-facing errors into ``<program>: error: <message>`` + exit code.

    Exit codes: 2 bad input (config, data, architecture, checkpoint, devices); 1 the training
    diverged (NaN/Inf); 3 interrupted by SIGTERM (checkpoint saved, rerun to resume).
    """
    from autonl_tf.training.driver import TrainingDivergedError, TrainingInterruptedError

    program = program or os.path.basename(sys.argv[0])
    try:
        yield
    except TrainingDivergedError as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterruptedError as e:
        print(f"{program}: {e}", file=sys.stderr)
        sys.exit(3)
    except _user_errors() as e:
        print(f"{program}: error: {e}", file=sys.stderr)
        sys.exit(2)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(arg) for arg in error.args) if error.args else type(error).__name__
    return " ".join(text.replace("\\n", " ").replace("\\'", "'").split())


def _unknown_key(error: BaseException) -> str:
    """ConfigDict's KeyError text (quoted key + 'Did you mean ...') as a short sentence."""
    text = _one_line(error)
    key = re.search(r"'([^']+)'", text)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    message = f"unknown --config key {key[1] if key else text!r}"
    return message + (f" (did you mean {hint[1]!r}?)" if hint else "")


def parse_flags(argv: list[str]) -> list[str]:
    """absl ``flags_parser`` for app.run: flag/config-override errors as one line, exit 2.

    absl reports `flags.Error` itself, but ml_collections raises KeyError/AttributeError/
    TypeError for an unknown or mistyped ``--config.<key>`` override, which would otherwise end
    in a traceback.
    """
    program = os.path.basename(argv[0]) if argv else "main"
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e)
    except (KeyError, AttributeError) as e:
        message = _unknown_key(e)
    except (TypeError, ValueError) as e:
        message = f"bad --config override: {_one_line(e)}"
    print(f"{program}: error: {message}", file=sys.stderr)
    print("Pass --helpfull to see the flags; config keys are listed in configs/common.py.",
          file=sys.stderr)
    sys.exit(2)
