"""The differentiable AutoNL search (docs/search.md): space, supernet, cost, decoding, report.

    space = space_from_config(spaces.get_config())    # validated, unrolled
    supernet = Supernet(space, num_classes=..., image_size=..., objective=SearchObjective(...))
    supernet.compile(weight_optimizer, threshold_optimizer=...)     # then the training driver
    arch_text(supernet)                                              # -> arch.txt
    build_child(supernet)                                            # the child, same weights

search_main.py runs the whole program (`autonl_tf.search.experiment`).
"""

from autonl_tf._lazy import lazy_attributes

# Public names, imported on first use: `configs/search.py` imports `autonl_tf.search.spaces`
# (plain data) while search_main.py parses its flags, before TensorFlow is needed.
_WHERE = {
    "arch_text": "decode",
    "build_child": "decode",
    "copy_weights_to_child": "decode",
    "current_decisions": "decode",
    "decision_from_gates": "decode",
    "set_decisions": "decode",
    "COST_LOSSES": "objective",
    "SearchObjective": "objective",
    "SearchCost": "search_cost",
    "TargetError": "search_cost",
    "ArchNotInSpaceError": "space",
    "BlockDecision": "space",
    "SearchBlock": "space",
    "SearchSpace": "space",
    "SearchSpaceError": "space",
    "decisions_for_arch": "space",
    "space_from_config": "space",
    "Supernet": "supernet",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

__all__ = ["COST_LOSSES", "ArchNotInSpaceError", "BlockDecision", "SearchBlock", "SearchCost",
           "SearchObjective", "SearchSpace", "SearchSpaceError", "Supernet", "TargetError",
           "arch_text", "build_child", "copy_weights_to_child", "current_decisions",
           "decision_from_gates", "decisions_for_arch", "set_decisions", "space_from_config"]
