"""One two-replica CPU strategy per test process.

TensorFlow's MirroredStrategy starts every instance at the same collective keys
(tensorflow/python/distribute/mirrored_strategy.py, TF 2.21: ``_collective_key_base = 0`` on
the class, read into ``CollectiveKeys(group_key_start=1 + ...)`` by each new strategy). A
second strategy in the same process therefore reuses the group and instance keys of the first,
and its all-reduce can meet the parameters the runtime cached for the first strategy's op of
that key ("Shape mismatch in the collective instance 100 ... expected shape [314] but another
member in the group expected shape [22714]"), which aborts the collective executor for the
rest of the process. Under pytest-xdist one worker runs several files that train on two
replicas, so they share this one strategy.
"""

from __future__ import annotations

import functools

import tensorflow as tf


@functools.cache
def two_cpu_replicas() -> tf.distribute.Strategy:
    """The process's MirroredStrategy over two logical CPUs (tests/conftest.py sets them up)."""
    from autonl_tf.runner import strategy as strategy_lib

    return strategy_lib.create_strategy(num_cpu_replicas=2)
