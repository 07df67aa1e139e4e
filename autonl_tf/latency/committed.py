"""The latency tables this repository ships: the demo search space on the machine that made them.

``autonl_tf/latency/tables/search_demo_<mode>_1thread.json`` hold the ``search:demo`` space
(its image size, width and class count) timed with LiteRT, 1 thread, on the CPU named in each
file. They are valid on that CPU only, and only while the demo space is unchanged (a table of
another space is refused); `rebuild_command` regenerates one.
"""

from __future__ import annotations

import os

__all__ = ["TABLES_DIR", "demo_table", "rebuild_command"]

TABLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tables")


def demo_table(mode: str) -> str:
    """The committed table of the demo space in ``mode`` ('float32' or 'int8')."""
    return os.path.join(TABLES_DIR, f"search_demo_{mode}_1thread.json")


def rebuild_command(mode: str, output: str | None = None) -> str:
    """The command that (re)builds the demo table of ``mode`` on this machine (by default over
    the committed one, named relative to the working directory)."""
    output = output or os.path.relpath(demo_table(mode))
    return ("python -m autonl_tf.latency.build_table --config=search:demo "
            f"--mode={mode} --threads=1 --output={output}")
