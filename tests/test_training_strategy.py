"""Strategy selection from flags, batch splitting and the XLA default.

The TPU and multi-worker selection tests cannot reach real TPUs/hosts here: they replace
`TPUClusterResolver`, `experimental_connect_to_cluster`, `initialize_tpu_system` and the strategy
classes with unittest.mock stand-ins and check that `create_strategy` wires them as Cloud TPU
expects (resolver from --tpu/--tpu_zone/--gcp_project, connect, initialise, TPUStrategy on the
resolver). Real multi-worker training runs in tests/test_train_main.py.
"""
# bazel: suite=training

import json
from unittest import mock

import pytest
import tensorflow as tf

from autonl_tf.runner import strategy as strategy_lib


class _FakeTPUStrategy:
    num_replicas_in_sync = 8

    def __init__(self, resolver):
        self.resolver = resolver


def _patched_tpu():
    resolver_cls = mock.MagicMock(name="TPUClusterResolver")
    patches = [
        mock.patch.object(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver_cls),
        mock.patch.object(tf.config, "experimental_connect_to_cluster"),
        mock.patch.object(tf.tpu.experimental, "initialize_tpu_system"),
        mock.patch.object(tf.distribute, "TPUStrategy", _FakeTPUStrategy),
    ]
    return resolver_cls, patches


def test_tpu_by_name_connects_initialises_and_builds_tpu_strategy():
    resolver_cls, patches = _patched_tpu()
    for p in patches:
        p.start()
    try:
        strategy = strategy_lib.create_strategy(tpu="my-tpu", tpu_zone="us-central1-b",
                                                gcp_project="proj")
        resolver_cls.assert_called_once_with(tpu="my-tpu", zone="us-central1-b", project="proj")
        resolver = resolver_cls.return_value
        tf.config.experimental_connect_to_cluster.assert_called_once_with(resolver)
        tf.tpu.experimental.initialize_tpu_system.assert_called_once_with(resolver)
        assert isinstance(strategy, _FakeTPUStrategy) and strategy.resolver is resolver
        # TPU defaults: XLA on, bfloat16 on, first-replica reduction of logs.
        assert strategy_lib.is_tpu_strategy(strategy)
        assert strategy_lib.strategy_kind(strategy) == "tpu"
        assert strategy_lib.resolve_jit_compile("auto", strategy) is True
        assert strategy_lib.per_replica_batch_size(4096, strategy) == 512
        from autonl_tf.runner.config import load_config
        assert strategy_lib.use_bfloat16(load_config("autonl_s"), strategy) is True
    finally:
        for p in patches:
            p.stop()


def test_tpu_vm_local_does_not_connect_to_a_cluster():
    resolver_cls, patches = _patched_tpu()
    for p in patches:
        p.start()
    try:
        strategy_lib.create_strategy(tpu="local")
        resolver_cls.assert_called_once_with(tpu="local", zone=None, project=None)
        tf.config.experimental_connect_to_cluster.assert_not_called()
        tf.tpu.experimental.initialize_tpu_system.assert_called_once()
    finally:
        for p in patches:
            p.stop()


def test_tf_config_with_several_tasks_selects_multi_worker(monkeypatch):
    tf_config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                 "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with mock.patch.object(tf.distribute, "MultiWorkerMirroredStrategy") as mwms:
        mwms.return_value.num_replicas_in_sync = 2
        assert strategy_lib.create_strategy() is mwms.return_value
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(strategy_lib.StrategyError, match="TF_CONFIG"):
        strategy_lib.create_strategy()


def test_single_task_tf_config_is_not_multi_worker(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    strategy = strategy_lib.create_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_cpu_defaults():
    strategy = strategy_lib.create_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy_lib.strategy_kind(strategy) == "cpu"
    assert strategy_lib.resolve_jit_compile("auto", strategy) is False
    assert strategy_lib.resolve_jit_compile("true", strategy) is True
    assert strategy_lib.is_chief(strategy)
    with pytest.raises(strategy_lib.StrategyError, match="jit_compile"):
        strategy_lib.resolve_jit_compile("sometimes", strategy)


def test_mirrored_over_logical_cpus_and_batch_split():
    strategy = strategy_lib.create_strategy(num_cpu_replicas=2)
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2
    assert strategy_lib.strategy_kind(strategy) == "cpu_mirrored"
    assert strategy_lib.resolve_jit_compile("auto", strategy) is False
    assert strategy_lib.per_replica_batch_size(8, strategy) == 4
    with pytest.raises(strategy_lib.StrategyError, match="not divisible by the 2 replicas"):
        strategy_lib.per_replica_batch_size(7, strategy)


def test_too_many_cpu_replicas_after_initialisation_is_an_error():
    tf.config.list_logical_devices("CPU")  # devices are initialised by now
    with pytest.raises(strategy_lib.StrategyError, match="64 CPU replicas"):
        strategy_lib.create_strategy(num_cpu_replicas=64)


def test_more_gpus_than_visible_is_an_error():
    with pytest.raises(strategy_lib.StrategyError, match="GPUs requested"):
        strategy_lib.create_strategy(num_gpus=len(tf.config.list_physical_devices("GPU")) + 1)
