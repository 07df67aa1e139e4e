"""Search spaces of the AutoNL search (docs/search.md), as data.

``get_config(variant)`` returns an `ml_collections.ConfigDict`; `autonl_tf.search.space` turns it
into the blocks of the supernet and validates it (a bad key is named in the error). Format::

    activation        'swish' (every block gets the `sw` token) or 'relu6'
    kernel_sizes      depthwise kernel choices, ascending odd sizes, e.g. (3, 5); the smaller
                      kernels are the centre of the largest one (superkernel)
    expand_ratios     expansion choices, ascending, e.g. (3, 6); a smaller expansion is the first
                      channels of the largest one (all >= 2 when there is more than one choice)
    lightnl_ratios    LightNL channel-ratio choices, ascending, e.g. (0.125, 0.25)
    lightnl_strides   LightNL key/value stride choices, a subset of (1, 2)
    stages            list of stages, each a dict with
        filters       output channels (before the width multiplier)          required
        repeats       number of blocks                                       required
        stride        stride of the first block (1 or 2)                     required
        kernel_sizes, expand_ratios, lightnl_ratios, lightnl_strides
                      per-stage overrides of the choices above; a single choice = fixed
        se_ratio      SE ratio of every block (0 = no SE), or a list with one value per block
        se_ratios     instead of se_ratio: SE choices searched for every block of the stage,
                      e.g. (0, 0.25, 0.5) (0 = no SE; a smaller SE is the first channels of the
                      larger one's bottleneck)
        lightnl       whether the blocks may host a LightNL (searched: insert or not), or a
                      list with one bool per block
        skip          whether the non-first blocks of the stage may be dropped (default True)

The stem (32 channels) and head (1280 channels) are those of `autonl_tf.models.ModelSpec`: the
architecture format written by the search has no tokens for them.

Variants: 'autonl' (default; the MobileNetV2-like macro of Single-Path NAS with SE searched in
the last stages; it contains AutoNL-S and AutoNL-L, see `autonl_tf.search.decisions_for_arch`),
'single_path' (the same macro without SE, as in Single-Path NAS), 'tiny' (two blocks per
searchable stage, SE fixed at 1/2 from the 80-channel stage on; small graphs for the tests) and
'demo' (the macro's stages that still see space at 32 px: output stride 16, stages 16/24/40/80
with two blocks each, LightNL candidates on the 8x8 and 4x4 maps, SE searched in the last stage;
the demo search and benchmarks/search_quality.py).
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("autonl", "single_path", "tiny", "demo")


def _stage(filters, repeats, stride, **overrides):
    return dict(filters=filters, repeats=repeats, stride=stride, **overrides)


def _fixed(filters, stride, kernel, expand, se_ratio=0.0):
    """A stage of one block with no decisions (kernel, expansion fixed; no LightNL candidate)."""
    return _stage(filters, 1, stride, kernel_sizes=(kernel,), expand_ratios=(expand,),
                  se_ratio=se_ratio, lightnl=False, skip=False)


def get_config(variant: str = "autonl") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"search space variant {variant!r}: expected one of {VARIANTS}")
    if variant == "demo":
        # The macro's stages that still see space at 32 px (output stride 16, the last maps 2x2),
        # two blocks each, LightNL candidates where the maps are 8x8 and 4x4, SE searched in
        # the 80-channel stage.
        return _space([_fixed(16, 1, kernel=3, expand=1), _stage(24, 2, 2), _stage(40, 2, 2),
                       _stage(80, 2, 2, se_ratios=(0.0, 0.25, 0.5), lightnl=False)])
    repeats = 2 if variant == "tiny" else 4
    if variant == "autonl":
        # SE searched (none, 1/4, 1/2) where the published networks use it: AutoNL-S puts SE 1/4
        # and AutoNL-L none or 1/2 on the first block of the 80-channel stage.
        se = dict(se_ratios=(0.0, 0.25, 0.5))
        last_se = 0.5
    elif variant == "tiny":
        se, last_se = dict(se_ratio=0.5), 0.5
    else:  # single_path: no SE, as in Single-Path NAS
        se, last_se = dict(se_ratio=0.0), 0.0
    stages = [
        _fixed(16, 1, kernel=3, expand=1),
        _stage(24, repeats, 2),
        _stage(40, repeats, 2),
        _stage(80, repeats, 2, **se),
        _stage(96, repeats, 1, **se),
        _stage(192, repeats, 2, **se),
        # One block, never skipped, expansion 6; its kernel and LightNL are searched (AutoNL-S/L
        # both end with k5 and a LightNL 1/4 here).
        _stage(320, 1, 1, kernel_sizes=(3, 5), expand_ratios=(6,), se_ratio=last_se,
               lightnl=True, skip=False),
    ]
    return _space(stages)


def _space(stages: list) -> ml_collections.ConfigDict:
    """The choices every variant offers, over ``stages``."""
    return ml_collections.ConfigDict(dict(
        activation="swish",
        kernel_sizes=(3, 5),
        expand_ratios=(3, 6),
        lightnl_ratios=(0.125, 0.25),
        lightnl_strides=(1, 2),
        stages=stages,
    ))
