"""What a network is, without TensorFlow: `ModelSpec` (decoded blocks + global settings), its
plan at an input size / width / class count (`autonl_tf.plan`) and its analytic cost;
`autonl_tf.models.builder` turns a plan into a Keras model."""

from __future__ import annotations

import dataclasses

from autonl_tf import cost
from autonl_tf.arch import BlockSpec, encode_arch
from autonl_tf.plan import HEAD_FILTERS, STEM_FILTERS, NetworkPlan, plan_network

__all__ = ["ModelSpec", "check_image_size"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A whole network: its blocks and the settings around them.

    ``activation`` is that of the stem, the head and every block without the ``sw`` token.
    """

    name: str
    blocks: tuple[BlockSpec, ...]
    activation: str = "swish"
    stem_filters: int = STEM_FILTERS
    head_filters: int = HEAD_FILTERS

    @property
    def arch_string(self) -> str:
        return encode_arch(self.blocks)

    def plan(self, image_size: int = 224, num_classes: int = 1000,
             width_multiplier: float = 1.0, depth_divisor: int = 8) -> NetworkPlan:
        """The network at this input size / class count / width, every layer resolved."""
        return plan_network(self.blocks, name=self.name, activation=self.activation,
                            stem_filters=self.stem_filters, head_filters=self.head_filters,
                            image_size=image_size, num_classes=num_classes,
                            width_multiplier=width_multiplier, depth_divisor=depth_divisor)

    def cost(self, image_size: int = 224, num_classes: int = 1000,
             width_multiplier: float = 1.0, depth_divisor: int = 8) -> cost.ModelCost:
        """Analytic MACs/params of the network `build_model` builds with these arguments."""
        return cost.model_cost(self.plan(image_size, num_classes, width_multiplier,
                                         depth_divisor))


def check_image_size(image_size: int) -> None:
    """The network downsamples by 32: sizes must be positive multiples of 32."""
    if not isinstance(image_size, int) or image_size < 32 or image_size % 32:
        raise ValueError(
            f"image size {image_size!r} is not supported: use a positive multiple of 32 "
            f"(e.g. 224, 256, 64)")
