"""The differentiable AutoNL search (docs/search.md): space, supernet, cost, decoding, report.

    space = space_from_config(spaces.get_config())    # validated, unrolled
    supernet = Supernet(space, num_classes=..., image_size=..., objective=SearchObjective(...))
    supernet.compile(weight_optimizer, threshold_optimizer=...)     # then the training driver
    arch_text(supernet)                                              # -> arch.txt
    build_child(supernet)                                            # the child, same weights

search_main.py runs the whole program (`autonl_tf.search.experiment`).
"""

from autonl_tf.search.decode import (
    arch_text,
    build_child,
    copy_weights_to_child,
    current_decisions,
    decision_from_gates,
    set_decisions,
)
from autonl_tf.search.objective import COST_LOSSES, SearchObjective
from autonl_tf.search.search_cost import SearchCost, TargetError
from autonl_tf.search.space import (
    ArchNotInSpaceError,
    BlockDecision,
    SearchBlock,
    SearchSpace,
    SearchSpaceError,
    decisions_for_arch,
    space_from_config,
)
from autonl_tf.search.supernet import Supernet

__all__ = ["COST_LOSSES", "ArchNotInSpaceError", "BlockDecision", "SearchBlock", "SearchCost",
           "SearchObjective", "SearchSpace", "SearchSpaceError", "Supernet", "TargetError",
           "arch_text", "build_child", "copy_weights_to_child", "current_decisions",
           "decision_from_gates", "decisions_for_arch", "set_decisions", "space_from_config"]
