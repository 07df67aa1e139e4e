"""Entry point of ``python -m autonl_tf.export`` (see cli.py)."""

from autonl_tf.export import cli

__doc__ = cli.__doc__  # the usage text --help prints

cli.run()
