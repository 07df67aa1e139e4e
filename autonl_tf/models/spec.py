"""What a network is, without TensorFlow: `ModelSpec` (decoded blocks + global settings) and
its analytic cost; `autonl_tf.models.builder` turns one into a Keras model."""

from __future__ import annotations

import dataclasses

from autonl_tf import cost
from autonl_tf.arch import BlockSpec, encode_arch

__all__ = ["ModelSpec", "check_image_size"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A whole network: its blocks and the settings around them.

    ``activation`` is that of the stem, the head and every block without the ``sw`` token.
    """

    name: str
    blocks: tuple[BlockSpec, ...]
    activation: str = "swish"
    stem_filters: int = 32
    head_filters: int = 1280

    @property
    def arch_string(self) -> str:
        return encode_arch(self.blocks)

    def cost(self, image_size: int = 224, num_classes: int = 1000,
             width_multiplier: float = 1.0) -> cost.ModelCost:
        """Analytic MACs/params of the network `build_model` builds with these arguments."""
        return cost.model_cost(self.blocks, image_size, num_classes, width_multiplier,
                               self.stem_filters, self.head_filters)


def check_image_size(image_size: int) -> None:
    """The network downsamples by 32: sizes must be positive multiples of 32."""
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ValueError(
            f"image size {image_size!r} is not supported: use a positive multiple of 32 "
            f"(e.g. 224, 256, 64)")
