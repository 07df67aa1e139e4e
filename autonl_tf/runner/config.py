"""Experiment configs as code: named configs in ``configs/<name>.py``, overrides, validation.

A config is an `ml_collections.ConfigDict` with the sections ``model``, ``data``, ``train`` and
``eval`` (see `autonl_tf.recipe.defaults` for every key and its meaning). The ``configs/``
folder of the repository is what users edit and pass; its files are loaded by path (never
imported as a package, so nothing named ``configs`` is installed or shadowed) and import only
``autonl_tf``. Where it is: ``$AUTONL_CONFIG_DIR``, else the repository's ``configs/`` next to
this package (a source checkout), else ``./configs``. Binaries take
``--config=<name or path.py>`` plus ``--config.<section>.<key>=<value>`` overrides (ml_collections
``config_flags``): an unknown key or a value of the wrong type is a flag-parsing error. Library
callers use `load_config(name, overrides)` with the same semantics.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import pathlib
import types
from collections.abc import Mapping
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from autonl_tf.errors import UserError

__all__ = [
    "config_dir",
    "config_module",
    "ConfigError",
    "apply_overrides",
    "define_config_flag",
    "list_named_configs",
    "load_config",
    "require",
    "resolve_config_path",
]

CONFIG_DIR_ENV = "AUTONL_CONFIG_DIR"


def config_dir() -> pathlib.Path | None:
    """The folder of named experiment configs (see the module docstring), None if none exists."""
    candidates = [os.environ.get(CONFIG_DIR_ENV),
                  pathlib.Path(__file__).absolute().parents[2] / "configs",
                  pathlib.Path.cwd() / "configs"]
    for candidate in candidates:
        if candidate and pathlib.Path(candidate).is_dir():
            return pathlib.Path(candidate)
    return None


class ConfigError(UserError, ValueError):
    """A bad experiment config or override; the message names the key and the fix."""


def require(condition: bool, message: str) -> None:
    """`ConfigError` with ``message`` (naming the key and the fix) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def list_named_configs() -> list[str]:
    """Names accepted by ``--config=<name>`` (the experiment configs in configs/)."""
    directory = config_dir()
    return sorted(p.stem for p in directory.glob("*.py")) if directory else []


def resolve_config_path(name_or_path: str) -> str:
    """``'demo'`` -> ``<repo>/configs/demo.py``; an existing ``.py`` path is returned as is.

    A ``:argument`` suffix (ml_collections' parameterised configs) is kept.
    """
    if not name_or_path or not name_or_path.strip():
        raise ConfigError(f"empty --config; expected one of {', '.join(list_named_configs())} "
                          "or a path to a .py config file")
    path, sep, argument = name_or_path.strip().partition(":")
    if path in list_named_configs():
        path = str(config_dir() / f"{path}.py")
    elif not (path.endswith(".py") and os.path.isfile(path)):
        raise ConfigError(
            f"unknown config {path!r}: expected one of {', '.join(list_named_configs())} or a "
            "path to an existing .py file with a get_config() function")
    return path + sep + argument


class _NamedConfigParser(flags.ArgumentParser):
    """Wraps the file parser of `config_flags` so that ``--config`` also accepts config names."""

    def __init__(self, file_parser: flags.ArgumentParser):
        self._file_parser = file_parser

    def parse(self, argument):
        try:
            resolved = resolve_config_path(argument)
        except ConfigError as e:
            raise ValueError(str(e)) from None  # absl reports ValueError as a flag error
        return self._file_parser.parse(resolved)

    def flag_type(self):
        return self._file_parser.flag_type()


def define_config_flag(name: str = "config", default: str | None = None,
                       help_string: str | None = None,
                       flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
    """Defines ``--<name>`` (a config name or file) with ``--<name>.a.b=value`` overrides."""
    help_string = help_string or (
        f"experiment config: a name ({', '.join(list_named_configs())}) or a .py file with "
        f"get_config(); override keys with --{name}.<section>.<key>=<value>")
    holder = config_flags.DEFINE_config_file(name, default=None, help_string=help_string,
                                             flag_values=flag_values, lock_config=True)
    # Set before any parsing happens (parsing runs the parser, then applies the overrides).
    flag = flag_values[name]
    flag.parser = _NamedConfigParser(flag.parser)
    if default is not None:
        try:
            flag_values.set_default(name, default)
        except flags.Error:
            # No configs/ folder here (an installed package run outside the repository): the
            # program still answers --help and bad flags, and a run without --config is one
            # flag error naming the fix.
            flags.register_validator(
                name, lambda value: value is not None, flag_values=flag_values,
                message=f"--{name} is required here: the default config {default!r} is in no "
                        f"configs/ folder (pass --{name}=<file.py>, or set ${CONFIG_DIR_ENV})")
    return holder


def config_module(name_or_path: str) -> types.ModuleType:
    """The Python module of a named or file config (``config_module('search').VARIANTS``).

    Loaded from its file under a private module name, so no ``configs`` package is imported.
    """
    path = resolve_config_path(name_or_path).partition(":")[0]
    module_name = f"autonl_experiment_config_{pathlib.Path(path).stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_module_config(path_and_argument: str) -> ml_collections.ConfigDict:
    path, _, argument = path_and_argument.partition(":")
    module = config_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function")
    if argument and not inspect.signature(module.get_config).parameters:
        raise ConfigError(f"{path} has no variants: use it without ':{argument}'")
    config = module.get_config(argument) if argument else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return a ConfigDict")
    return config


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any] | None) -> ml_collections.ConfigDict:
    """Sets dotted keys (``{'train.batch_size': 64}``) with ConfigDict type checks, in place.

    Unknown keys and wrong types raise `ConfigError` (a locked ConfigDict refuses new keys).
    """
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = config
        try:
            for key in parents:
                node = node[key]
            if leaf not in node:
                raise KeyError(leaf)
            node[leaf] = value
        except (KeyError, AttributeError):
            raise ConfigError(f"unknown config key {dotted!r}") from None
        except TypeError as e:
            raise ConfigError(f"config key {dotted!r}: {e}") from None
    return config


def load_config(name_or_path: str,
                overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """Loads a named (or file) config, locked, with dotted-key overrides applied."""
    config = _load_module_config(resolve_config_path(name_or_path))
    if not config.is_locked:
        config.lock()
    return apply_overrides(config, overrides)


def to_plain_dict(config: ml_collections.ConfigDict | Mapping) -> dict:
    """A JSON-friendly nested dict of a ConfigDict (tuples become lists)."""
    if isinstance(config, ml_collections.ConfigDict):
        config = config.to_dict()

    def convert(value):
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return convert(copy.deepcopy(dict(config)))
