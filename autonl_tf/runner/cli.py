"""Command-line plumbing shared by every autonl_tf command: strategy flags, exit codes, errors."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags

from autonl_tf import errors
from autonl_tf._startup import quiet_tensorflow_startup
from autonl_tf.errors import (
    EXIT_BAD_INPUT,
    EXIT_NOT_LEARNING,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_RUN_FAILED,
    error_line,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_NOT_LEARNING", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_RUN_FAILED",
           "define_strategy_flags", "error_line", "exit_on_user_errors", "parse_flags",
           "quiet_tensorflow_startup", "run", "strategy_from_flags"]


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
    from autonl_tf.runner.strategy import create_strategy

    f = flags.FLAGS
    return create_strategy(tpu=f.tpu, tpu_zone=f.tpu_zone, gcp_project=f.gcp_project,
                           num_gpus=f.num_gpus, num_cpu_replicas=f.num_cpu_replicas)


@contextlib.contextmanager
def exit_on_user_errors(program: str | None = None):
    """The one place where a command's errors become ``<program>: error: <message>`` and an
    exit code (`autonl_tf.errors`: 2 bad input, 1 the run failed, 3 preempted), including tf.data
    errors caused by a damaged record (explained by `autonl_tf.data.diagnose` as a DataError).
    Anything else keeps its traceback (a bug)."""
    with errors.exit_on_errors(program):
        try:
            yield
        except Exception:
            if "tensorflow" in sys.modules:  # a tf.data pipeline may have met a damaged record
                from autonl_tf.data import diagnose

                with diagnose.explain_input_errors(all_pipelines=True):
                    raise
            raise


def _config_override_keys(argv: list[str], config_flag: str) -> list[str]:
    """Dotted keys of the ``--<config_flag>.<key>=value`` overrides in argv, in order."""
    prefix = f"--{config_flag}."
    keys = []
    for arg in argv[1:]:
        if arg.startswith(prefix):
            keys.append(arg[len(prefix):].split("=", 1)[0])
    return keys


def _config_argument(argv: list[str], config_flag: str) -> str | None:
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith(f"--{config_flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{config_flag}" and i + 1 < len(argv):
            return argv[i + 1]
    try:
        return flags.FLAGS[config_flag].default_as_str.strip("'\"") or None
    except KeyError:
        return None


def _unknown_key(error: BaseException, argv: list[str], config_flag: str = "config") -> str:
    """The full dotted key of the override that does not exist (ConfigDict names only its leaf)."""
    text = errors.one_line(error)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    missing = None
    argument = _config_argument(argv, config_flag)
    if argument:
        try:
            from autonl_tf.runner import config as config_lib

            config = config_lib.load_config(argument)
        except Exception:  # the config itself is broken: report the raw key below
            config = None
        if config is not None:
            for key in _config_override_keys(argv, config_flag):
                node = config
                try:
                    for part in key.split("."):
                        node = node[part]
                except (KeyError, AttributeError, TypeError):
                    missing = key
                    break
    if missing is None:
        leaf = re.search(r"'([^']+)'", text)
        missing = leaf[1] if leaf else text
    message = f"unknown --{config_flag} key {missing!r}"
    if hint:
        parent = missing.rsplit(".", 1)[0] + "." if "." in missing else ""
        message += f" (did you mean {parent + hint[1]!r}?)"
    return message


def parse_flags(argv: list[str], *, load_tensorflow: bool = True) -> list[str]:
    """absl ``flags_parser`` for app.run: flag/config-override errors as one line, exit 2.

    The flags and config files are checked before TensorFlow is loaded (a bad one is answered
    at once); then, unless ``load_tensorflow`` is False (the command checks more first and calls
    `quiet_tensorflow_startup` itself), TensorFlow is loaded without its CUDA-probe noise.

    absl reports `flags.Error` itself, but ml_collections raises KeyError/AttributeError/
    TypeError for an unknown or mistyped ``--config.<key>`` override, which would otherwise end
    in a traceback.
    """
    program = os.path.basename(argv[0]) if argv else "main"
    try:
        remaining = flags.FLAGS(argv)
        if load_tensorflow:
            quiet_tensorflow_startup()
        return remaining
    except SystemExit as e:
        # absl's --help/--helpfull print the usage and exit 1; asking for help is not an error.
        if any(a in ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
               for a in argv[1:]):
            sys.exit(EXIT_OK)
        raise e
    except flags.Error as e:
        message = errors.one_line(e)
    except (KeyError, AttributeError) as e:
        message = _unknown_key(e, argv)
    except (TypeError, ValueError) as e:
        message = f"bad --config override: {errors.one_line(e)}"
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[list[str]], None]) -> None:
    """``app.run`` with the shared flag parser and error handling of every autonl_tf command."""
    def guarded(argv):
        with exit_on_user_errors():
            return main(argv)

    app.run(guarded, flags_parser=parse_flags)

