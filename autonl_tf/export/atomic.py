"""All-or-nothing publication of an export directory.

An export is written into a hidden staging directory next to its final path and renamed into
place only once every file is written (and verified). A failed or interrupted export therefore
never leaves a half-written directory at the final path, and a previous export there stays
untouched until the new one is complete. Paths go through `tf.io.gfile`, so ``gs://`` works too
(object stores implement the rename as copy + delete: the final path still only appears after
the staging directory is complete, but the swap itself is not instantaneous there).

A process killed outright (SIGKILL, power loss) can leave the staging directory
``.<name>.staging-<token>`` behind; it is never at the final path and can be deleted.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.export.modes import ExportError

__all__ = ["atomic_directory"]

# Files whose presence identifies a directory as an earlier export that may be replaced.
_EXPORT_MARKERS = ("saved_model.pb", files.EXPORT_CARD_FILE)


def _looks_like_export(path: str) -> bool:
    return any(tf.io.gfile.exists(os.path.join(path, marker)) for marker in _EXPORT_MARKERS)


def _remove_quietly(path: str) -> None:
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except (OSError, tf.errors.OpError) as e:  # cleanup must not hide the original error
        logging.warning("could not remove %s: %s", path, e)


def _check_replaceable(final_dir: str) -> None:
    if not tf.io.gfile.exists(final_dir):
        return
    if not tf.io.gfile.isdir(final_dir):
        raise ExportError(f"export path {final_dir!r} exists and is a file, not a directory; "
                          "remove it or choose another --export_dir")
    if tf.io.gfile.listdir(final_dir) and not _looks_like_export(final_dir):
        raise ExportError(
            f"export path {final_dir!r} is a non-empty directory that is not an earlier export "
            f"(no {' or '.join(_EXPORT_MARKERS)}); refusing to replace it. Choose a new or empty "
            "--export_dir")


@contextlib.contextmanager
def atomic_directory(final_dir: str) -> Iterator[str]:
    """Yields an empty staging directory; on success it replaces ``final_dir`` as a whole.

    On any exception (including KeyboardInterrupt) the staging directory is deleted and
    ``final_dir`` is left exactly as it was. An existing ``final_dir`` is replaced only if it is
    empty or an earlier export (it contains ``saved_model.pb`` or ``export_card.json``); it is
    first moved aside, and moved back if the final rename fails.
    """
    final_dir = os.fspath(final_dir).rstrip("/")
    if not final_dir:
        raise ExportError("empty export path")
    _check_replaceable(final_dir)
    parent, name = os.path.split(final_dir)
    parent = parent or "."
    tf.io.gfile.makedirs(parent)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = os.path.join(parent, f".{name}.staging-{token}")
    tf.io.gfile.makedirs(staging)
    try:
        yield staging
        _check_replaceable(final_dir)  # it may have appeared while we were writing
    except BaseException:
        _remove_quietly(staging)
        raise
    _swap_into_place(staging, final_dir, os.path.join(parent, f".{name}.previous-{token}"))


def _swap_into_place(staging: str, final_dir: str, backup: str) -> None:
    had_previous = tf.io.gfile.exists(final_dir)
    if had_previous:
        tf.io.gfile.rename(final_dir, backup)
    try:
        tf.io.gfile.rename(staging, final_dir)
    except BaseException:
        if had_previous:
            tf.io.gfile.rename(backup, final_dir)
        _remove_quietly(staging)
        raise
    if had_previous:
        _remove_quietly(backup)
