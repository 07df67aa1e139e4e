"""The files autonl_tf writes into its directories, by name, and the one way it writes them.

Every command that writes a small file others read (a model dir's config.json, the search's
arch.txt, eval results, a dataset's metadata) goes through `write_atomic`: the content is written
to a hidden temporary file in the same directory and renamed over the final name, so a reader or
a killed run never sees half a file. Names are spelled here once; other modules import them.
Works on local paths and on object stores (``gs://``) through `tf.io.gfile`.

This module imports nothing from autonl_tf: every layer can use it.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

__all__ = ["ARCH_FILE", "CONFIG_FILE", "EVAL_RESULTS_FILE", "EXPORT_CARD_FILE",
           "SEARCH_FIGURE_FILE", "SEARCH_HISTORY_FILE", "SEARCH_SUMMARY_FILE", "TMP_PREFIX",
           "commit", "read_json", "temporary_path", "write_atomic", "write_json_atomic"]

# A model dir (train_main.py, search_main.py).
CONFIG_FILE = "config.json"  # the resolved experiment config; identifies the run's network
EVAL_RESULTS_FILE = "eval_results.json"  # every evaluation of the run's checkpoints
# A search's model dir (search_main.py), besides config.json and checkpoints.
ARCH_FILE = "arch.txt"  # the searched child, one block string per line
SEARCH_SUMMARY_FILE = "search_summary.json"
SEARCH_HISTORY_FILE = "search_history.json"
SEARCH_FIGURE_FILE = "search.png"
# An export dir.
EXPORT_CARD_FILE = "export_card.json"


def _gfile():
    """`tf.io.gfile`, imported on first use (the module stays cheap to import)."""
    import tensorflow as tf

    return tf.io.gfile


# Temporary files start with this (hidden; never matched by a shard pattern like train-*).
TMP_PREFIX = ".tmp-"


def temporary_path(path: str) -> str:
    """A unique hidden sibling of ``path`` to write to before `commit`."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{TMP_PREFIX}{name}.{uuid.uuid4().hex[:8]}")


def commit(temporary: str, path: str, durable: bool = False) -> None:
    """Renames a finished temporary file over ``path``.

    ``durable``: on a local disk, also fsync the data and the directory (dataset shards, which
    are expensive to rebuild); object stores publish an object only once it is closed.
    """
    if not durable or "://" in temporary:
        _gfile().rename(temporary, path, overwrite=True)
        return
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: str, data: str | bytes, durable: bool = False) -> str:
    """Writes the whole file ``path`` so that readers never see a partial one; returns path."""
    directory = os.path.dirname(path)
    if directory:
        _gfile().makedirs(directory)
    temporary = temporary_path(path)
    try:
        with _gfile().GFile(temporary, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        commit(temporary, path, durable)
    except BaseException:
        if _gfile().exists(temporary):
            _gfile().remove(temporary)
        raise
    return path


def write_json_atomic(path: str, value: Any, *, indent: int = 2, sort_keys: bool = False,
                      allow_nan: bool = False) -> str:
    """`write_atomic` of JSON; strict by default (NaN/Inf raise: write them as null first)."""
    return write_atomic(path, json.dumps(value, indent=indent, sort_keys=sort_keys,
                                         allow_nan=allow_nan) + "\n")


def read_json(path: str) -> Any:
    """The JSON content of ``path`` (local or gs://)."""
    with _gfile().GFile(path) as f:
        return json.load(f)
