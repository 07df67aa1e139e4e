"""Network builders and named models.

`spec` (what a network is, its plan and cost) and `registry` (named models, ``--arch`` values)
need no TensorFlow; `builder` (Keras) is imported on first use of its names, so that the profiler and
the flag checks of the commands run without loading TensorFlow.
"""

from autonl_tf._lazy import lazy_attributes
from autonl_tf.models.registry import (
    build_named_model,
    list_models,
    load_arch_file,
    resolve_model_spec,
    spec_from_blocks,
)
from autonl_tf.models.spec import ModelSpec, check_image_size

__getattr__, __dir__ = lazy_attributes(__name__, {"build_model": "builder",
                                                  "build_network": "builder"})

__all__ = ["ModelSpec", "build_model", "build_named_model", "build_network", "check_image_size",
           "list_models", "load_arch_file", "resolve_model_spec", "spec_from_blocks"]
