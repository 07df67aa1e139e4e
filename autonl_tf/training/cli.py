"""Command-line plumbing shared by every autonl_tf command: strategy flags, exit codes, errors."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags

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


__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_RUN_FAILED",
           "define_strategy_flags", "error_line", "exit_on_user_errors", "parse_flags",
           "quiet_tensorflow_startup", "run", "strategy_from_flags"]

# The commands import this module before anything imports TensorFlow.
quiet_tensorflow_startup()


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


# Exit codes of every autonl_tf command (README "Exit codes").
EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run itself failed: divergence, an export that fails verification
EXIT_BAD_INPUT = 2  # bad flags, config, data, architecture, checkpoint or devices (one line)
EXIT_PREEMPTED = 3  # SIGTERM: a checkpoint was saved, rerun the command to resume


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story: printed as one line, no traceback."""
    from autonl_tf.arch import ArchError
    from autonl_tf.data import DataError
    from autonl_tf.training.checkpoints import (
        CheckpointMismatchError,
        ModelDirBusyError,
        NoCheckpointError,
    )
    from autonl_tf.training.config import ConfigError
    from autonl_tf.training.strategy import StrategyError

    errors: list[type[BaseException]] = [ArchError, DataError, ConfigError, StrategyError,
                                         CheckpointMismatchError, NoCheckpointError,
                                         ModelDirBusyError]
    for module, names in (("autonl_tf.export", ("ExportError",)),
                          ("autonl_tf.search", ("SearchSpaceError", "TargetError"))):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        errors += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(errors)


def _run_failures() -> tuple[type[BaseException], ...]:
    """Failures of the run itself (exit 1 with one line): divergence, failed verification."""
    from autonl_tf.training.driver import TrainingDivergedError

    errors: list[type[BaseException]] = [TrainingDivergedError]
    try:
        from autonl_tf.export.saved_model import VerificationError
        errors.append(VerificationError)
    except ImportError:
        pass
    return tuple(errors)


def error_line(program: str, error: BaseException) -> str:
    """``<program>: error: <message>`` on one line (messages never span lines)."""
    return f"{program}: error: {_one_line(error)}"


@contextlib.contextmanager
def exit_on_user_errors(program: str | None = None):
    """The one place where errors become ``<program>: error: <message>`` and an exit code.

    Exit codes: 2 bad input (config, data, architecture, checkpoint, devices), including
    tf.data errors caused by a damaged record (explained by `autonl_tf.data.diagnose`); 1 the
    run itself failed (NaN/Inf loss or weights, an export failing verification); 3 interrupted
    by SIGTERM (checkpoint saved, rerun to resume). Anything else keeps its traceback (a bug).
    """
    from autonl_tf.data import diagnose
    from autonl_tf.training.driver import TrainingInterruptedError

    program = program or os.path.basename(sys.argv[0])
    try:
        with diagnose.explain_input_errors(all_pipelines=True):
            yield
    except app.UsageError as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except TrainingInterruptedError as e:
        print(f"{program}: {_one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_PREEMPTED)
    except _run_failures() as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_RUN_FAILED)
    except _user_errors() as e:
        print(error_line(program, e), file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(arg) for arg in error.args) if error.args else type(error).__name__
    return " ".join(text.replace("\\n", " ").replace("\\'", "'").split())


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
    text = _one_line(error)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    missing = None
    argument = _config_argument(argv, config_flag)
    if argument:
        try:
            from autonl_tf.training import config as config_lib

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


def parse_flags(argv: list[str]) -> list[str]:
    """absl ``flags_parser`` for app.run: flag/config-override errors as one line, exit 2.

    absl reports `flags.Error` itself, but ml_collections raises KeyError/AttributeError/
    TypeError for an unknown or mistyped ``--config.<key>`` override, which would otherwise end
    in a traceback.
    """
    program = os.path.basename(argv[0]) if argv else "main"
    try:
        return flags.FLAGS(argv)
    except SystemExit as e:
        # absl's --help/--helpfull print the usage and exit 1; asking for help is not an error.
        if any(a in ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
               for a in argv[1:]):
            sys.exit(EXIT_OK)
        raise e
    except flags.Error as e:
        message = _one_line(e)
    except (KeyError, AttributeError) as e:
        message = _unknown_key(e, argv)
    except (TypeError, ValueError) as e:
        message = f"bad --config override: {_one_line(e)}"
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def run(main: Callable[[list[str]], None]) -> None:
    """``app.run`` with the shared flag parser and error handling of every autonl_tf command."""
    def guarded(argv):
        with exit_on_user_errors():
            return main(argv)

    app.run(guarded, flags_parser=parse_flags)

