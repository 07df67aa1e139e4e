"""Named models and the resolution of ``--arch`` values.

A named model is an architecture file ``autonl_tf/models/arch/<name>.txt`` (shipped with the
package). ``--arch`` accepts a model name,
a path to an architecture file, or an architecture string itself (block strings separated by
newlines, spaces, commas or semicolons).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

from autonl_tf.arch import ArchError, decode_arch
from autonl_tf.models.spec import ModelSpec

if TYPE_CHECKING:
    import keras

__all__ = ["ARCH_DIR", "build_named_model", "list_models", "load_arch_file", "resolve_model_spec",
           "spec_from_blocks"]


# The published networks, one block string per line.
ARCH_DIR = pathlib.Path(__file__).absolute().parent / "arch"


def list_models() -> list[str]:
    """Names of the published models (the files in `ARCH_DIR`)."""
    return sorted(p.stem for p in ARCH_DIR.glob("*.txt"))


def spec_from_blocks(name: str, blocks) -> ModelSpec:
    """Wraps decoded blocks into a `ModelSpec`.

    The stem and head use swish when every block does (the AutoNL family, all ``sw``), otherwise
    ReLU6 (the MobileNetV2 convention); blocks without ``sw`` use ReLU6 either way.
    """
    activation = "swish" if all(b.swish for b in blocks) else "relu6"
    return ModelSpec(name=name, blocks=tuple(blocks), activation=activation)


def load_arch_file(path: str | os.PathLike) -> ModelSpec:
    """Reads an architecture file (one block string per line)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ArchError(f"cannot read architecture file {os.fspath(path)!r}: {e.strerror}") from e
    try:
        blocks = decode_arch(text)
    except ArchError as e:
        raise ArchError(f"{os.fspath(path)}: {e}") from None
    return spec_from_blocks(os.path.splitext(os.path.basename(path))[0], blocks)


def resolve_model_spec(arch: str) -> ModelSpec:
    """A model name, an architecture file path or an architecture string -> `ModelSpec`."""
    if not arch or not arch.strip():
        raise ArchError(f"empty architecture; expected a model name ({', '.join(list_models())}), "
                        "an architecture file or block strings")
    arch = arch.strip()
    if arch in list_models():
        return load_arch_file(ARCH_DIR / f"{arch}.txt")
    if os.path.isfile(arch):
        return load_arch_file(arch)
    if "_" not in arch:  # looks like a name or a path, not block strings
        raise ArchError(
            f"unknown model or missing architecture file {arch!r}; expected one of "
            f"{', '.join(list_models())}, an existing architecture file, or block strings such "
            "as 'r1_k3_s11_e1_i32_o16_sw'")
    return spec_from_blocks("custom", decode_arch(arch))


def build_named_model(name: str, **kwargs) -> keras.Model:
    """Builds a model from a name/file/string (see `resolve_model_spec`); kwargs go to build_model."""
    from autonl_tf.models.builder import build_model  # TensorFlow: only when building

    return build_model(resolve_model_spec(name), **kwargs)
