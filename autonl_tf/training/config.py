"""Experiment configs as code: named configs in ``configs/<name>.py``, overrides, validation.

A config is an `ml_collections.ConfigDict` with the sections ``model``, ``data``, ``train`` and
``eval`` (see ``configs/common.py`` for every key and its meaning). Binaries take
``--config=<name or path.py>`` plus ``--config.<section>.<key>=<value>`` overrides (ml_collections
``config_flags``): an unknown key or a value of the wrong type is a flag-parsing error. Library
callers use `load_config(name, overrides)` with the same semantics.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

import configs

__all__ = [
    "CONFIG_DIR",
    "ConfigError",
    "apply_overrides",
    "define_config_flag",
    "list_named_configs",
    "load_config",
    "resolve_config_path",
]

CONFIG_DIR = pathlib.Path(configs.__file__).resolve().parent
# Modules of configs/ that are not experiment configs.
_NOT_EXPERIMENTS = frozenset({"__init__", "common", "search_space"})


class ConfigError(ValueError):
    """A bad experiment config or override; the message names the key and the fix."""


def list_named_configs() -> list[str]:
    """Names accepted by ``--config=<name>`` (the experiment configs in configs/)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in _NOT_EXPERIMENTS)


def resolve_config_path(name_or_path: str) -> str:
    """``'demo'`` -> ``<repo>/configs/demo.py``; an existing ``.py`` path is returned as is.

    A ``:argument`` suffix (ml_collections' parameterised configs) is kept.
    """
    if not name_or_path or not name_or_path.strip():
        raise ConfigError(f"empty --config; expected one of {', '.join(list_named_configs())} "
                          "or a path to a .py config file")
    path, sep, argument = name_or_path.strip().partition(":")
    if path in list_named_configs():
        path = str(CONFIG_DIR / f"{path}.py")
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
        flag_values.set_default(name, default)
    return holder


def _load_module_config(path_and_argument: str) -> ml_collections.ConfigDict:
    path, _, argument = path_and_argument.partition(":")
    module_name = f"autonl_experiment_config_{pathlib.Path(path).stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config() function")
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
