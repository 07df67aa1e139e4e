"""Entry point of ``python -m autonl_tf.export`` (see cli.py)."""

from autonl_tf.export.cli import run

run()
