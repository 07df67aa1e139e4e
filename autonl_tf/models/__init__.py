"""Network builders and named models."""

from autonl_tf.models.builder import ModelSpec, build_model, check_image_size
from autonl_tf.models.registry import (
    build_named_model,
    list_models,
    load_arch_file,
    resolve_model_spec,
    spec_from_blocks,
)

__all__ = ["ModelSpec", "build_model", "build_named_model", "check_image_size", "list_models",
           "load_arch_file", "resolve_model_spec", "spec_from_blocks"]
