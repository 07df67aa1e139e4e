"""Named configurations: model architectures (``arch/<name>.txt``) and experiment configs."""

import pathlib

ARCH_DIR = pathlib.Path(__file__).resolve().parent / "arch"
