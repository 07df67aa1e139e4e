"""Package attributes imported on first use (PEP 562), so that importing a light submodule of a
package does not load TensorFlow through the package's ``__init__``.

The command-line tools parse and check their flags and config files before anything imports
TensorFlow (a few seconds): a config file that imports ``autonl_tf.search.spaces`` or a profiler
that reads ``autonl_tf.models.registry`` then costs no TensorFlow start-up, and a bad flag is
answered at once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_attributes(package: str, where: dict[str, str]
                    ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps each public name to the
    submodule (relative to the package) that defines it; the first access imports it."""
    def __getattr__(name: str) -> object:
        try:
            submodule = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{submodule}"), name)
        setattr(sys.modules[package], name, value)  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
