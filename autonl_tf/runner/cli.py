"""Command-line plumbing shared by every autonl_tf command: strategy flags, the flags that
override config keys, exit codes, errors."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Sequence

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
           "CONFIG_FLAGS", "ConfigFlag", "apply_config_flags", "define_config_flags",
           "define_strategy_flags", "error_line", "exit_on_user_errors", "parse_flags",
           "quiet_tensorflow_startup", "run", "strategy_from_flags"]


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """A Cloud-TPU-style flag that, when given, overrides one config key."""

    key: str  # the dotted config key it overrides
    kind: str  # 'string' | 'integer' | 'float' | 'bool'
    help: str
    lower_bound: int | None = None


# The one table of flag -> config key (the programs define the subset they take).
CONFIG_FLAGS: dict[str, ConfigFlag] = {
    "data_dir": ConfigFlag("data.data_dir", "string", "Overrides config.data.data_dir."),
    "arch": ConfigFlag("model.arch", "string", "Overrides config.model.arch: a model name "
                       "(autonl_s, autonl_l, mobilenet_v2), an architecture file or block "
                       "strings."),
    "target_flops": ConfigFlag("search.target_flops", "float", "MACs target of the searched "
                               "network, e.g. 350e6 (config.search.target_flops)."),
    "target_latency_ms": ConfigFlag("search.target_latency_ms", "float", "Latency target in ms "
                                    "instead of MACs, predicted by --latency_table "
                                    "(config.search.target_latency_ms; docs/latency.md)."),
    "latency_table": ConfigFlag("search.latency_table", "string", "Latency table of the device "
                                "to search for (config.search.latency_table; python -m "
                                "autonl_tf.latency.build_table)."),
    "train_steps": ConfigFlag("train.train_steps", "integer",
                              "Overrides config.train.train_steps.", lower_bound=1),
    "train_epochs": ConfigFlag("train.train_epochs", "float",
                               "Overrides config.train.train_epochs."),
    "train_batch_size": ConfigFlag("train.batch_size", "integer",
                                   "Global training batch (config.train.batch_size).",
                                   lower_bound=1),
    "eval_batch_size": ConfigFlag("eval.batch_size", "integer",
                                  "Global eval batch (config.eval.batch_size).", lower_bound=1),
    "iterations_per_loop": ConfigFlag("train.steps_per_loop", "integer", "Training steps per "
                                      "host call (config.train.steps_per_loop).", lower_bound=1),
    "use_bfloat16": ConfigFlag("train.use_bfloat16", "bool", "mixed_bfloat16 "
                               "(config.train.use_bfloat16; default: on TPU only)."),
}


def define_config_flags(names: Sequence[str]) -> None:
    """Defines these flags of `CONFIG_FLAGS` (default None: the config's value stands)."""
    for name in names:
        flag = CONFIG_FLAGS[name]
        define = getattr(flags, f"DEFINE_{flag.kind}")
        kwargs = {} if flag.lower_bound is None else {"lower_bound": flag.lower_bound}
        define(name, None, flag.help, **kwargs)


def apply_config_flags(config, names: Sequence[str]) -> None:
    """Overrides ``config``'s keys by the flags of ``names`` that were given (not None)."""
    from autonl_tf.runner import config as config_lib

    values = {name: getattr(flags.FLAGS, name) for name in names}
    config_lib.apply_overrides(config, {CONFIG_FLAGS[name].key: value
                                        for name, value in values.items() if value is not None})


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

