"""Choosing a `tf.distribute.Strategy` from the command line, and what depends on it.

Order of precedence in `create_strategy`:
  1. ``tpu`` given: TPUClusterResolver + initialize_tpu_system + TPUStrategy (Cloud TPU, TPU VM
     with ``tpu='local'``, or a pod slice by name).
  2. ``TF_CONFIG`` describes more than one task (or ``multi_worker=True``): MultiWorkerMirrored
     strategy over all hosts (each host's local GPUs, or its CPU).
  3. Local GPUs: MirroredStrategy over all of them (``num_gpus`` limits the count).
  4. ``num_cpu_replicas > 1``: MirroredStrategy over that many logical CPU devices (tests, and a
     way to check multi-replica semantics on a laptop).
  5. Otherwise the default (no-op) strategy on the CPU.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

from autonl_tf.errors import UserError

__all__ = [
    "StrategyError",
    "create_strategy",
    "is_chief",
    "is_tpu_strategy",
    "num_workers",
    "per_replica_batch_size",
    "resolve_execution",
    "resolve_jit_compile",
    "strategy_kind",
    "use_bfloat16",
    "task_info",
]


class StrategyError(UserError, ValueError):
    """The requested devices/cluster cannot be set up, or a batch does not split over replicas."""


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON: {e}") from None


def _cluster_size(tf_config: dict) -> int:
    cluster = tf_config.get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def _ensure_logical_cpus(count: int) -> list[str]:
    """Splits the host CPU into ``count`` logical devices (only possible before TF starts)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # already initialised, e.g. by tests/conftest.py; checked below
    logical = tf.config.list_logical_devices("CPU")
    if len(logical) < count:
        raise StrategyError(
            f"{count} CPU replicas requested but TensorFlow has already initialised "
            f"{len(logical)} CPU device(s); set the replica count before any TensorFlow op runs")
    return [d.name for d in logical[:count]]


def _tpu_flags(tpu: str, zone: str | None, project: str | None) -> str:
    return " ".join([f"--tpu={tpu}"] + ([f"--tpu_zone={zone}"] if zone else [])
                    + ([f"--gcp_project={project}"] if project else []))


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _tpu_strategy(tpu: str, zone: str | None, project: str | None) -> tf.distribute.Strategy:
    """TPUStrategy on a Cloud TPU; a missing or unreachable TPU is one `StrategyError` line."""
    flags_used = _tpu_flags(tpu, zone, project)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu, zone=zone, project=project)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (RuntimeError, ValueError, ImportError, tf.errors.OpError) as e:
        cause = _first_line(e)
        if "Missing runtime dependency" in cause or isinstance(e, ImportError):
            raise StrategyError(
                f"{flags_used}: the Cloud TPU client is not installed ({cause}); install the "
                "TPU extra: pip install -e '.[tpu]' (cloud-tpu-client), or run on a TPU VM "
                "with --tpu=local") from None
        if tpu == "local":
            raise StrategyError(
                f"{flags_used}: no TPU on this machine ({cause}). Check that this is a Cloud "
                "TPU VM with the TPU runtime (libtpu) installed, or drop --tpu to train on the "
                "GPUs/CPU") from None
        raise StrategyError(
            f"{flags_used}: cannot reach the Cloud TPU ({cause}). Check the TPU name, zone and "
            f"project (gcloud compute tpus list --zone={zone or '<zone>'} "
            f"--project={project or '<project>'}), that the TPU is READY, and that this VM "
            "may use the TPU API") from None
    logging.info("TPUStrategy on %r: %d replicas", tpu, strategy.num_replicas_in_sync)
    return strategy


def create_strategy(tpu: str | None = None, tpu_zone: str | None = None,
                    gcp_project: str | None = None, num_gpus: int | None = None,
                    num_cpu_replicas: int = 0,
                    multi_worker: bool | None = None) -> tf.distribute.Strategy:
    """Builds the strategy the flags ask for (see the module docstring for the precedence).

    Args:
      tpu: TPU name, ``grpc://host:port`` address, or ``'local'`` for a TPU VM; None/'' = no TPU.
      tpu_zone, gcp_project: passed to `TPUClusterResolver` (None = discovered from metadata).
      num_gpus: use at most this many local GPUs (None = all; 0 = ignore GPUs).
      num_cpu_replicas: >1 = MirroredStrategy over this many logical CPU devices.
      multi_worker: force (True) or forbid (False) MultiWorkerMirroredStrategy; None = use it when
        ``TF_CONFIG`` lists more than one task.
    """
    if tpu:
        return _tpu_strategy(tpu, tpu_zone, gcp_project)

    tf_config = _tf_config()
    if multi_worker is None:
        multi_worker = _cluster_size(tf_config) > 1
    if multi_worker:
        if not tf_config:
            raise StrategyError("multi-worker training needs TF_CONFIG (cluster and task)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info("MultiWorkerMirroredStrategy: %d workers, %d replicas",
                     _cluster_size(tf_config), strategy.num_replicas_in_sync)
        return strategy

    # Physical, not logical, devices: listing logical devices would initialise TensorFlow and
    # rule out splitting the CPU below.
    gpu_count = len(tf.config.list_physical_devices("GPU"))
    if num_gpus is not None:
        if num_gpus > gpu_count:
            raise StrategyError(f"{num_gpus} GPUs requested but {gpu_count} are visible")
        gpu_count = num_gpus
    if gpu_count:
        strategy = tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpu_count)])
        logging.info("MirroredStrategy over %d GPU(s)", gpu_count)
        return strategy

    if num_cpu_replicas and num_cpu_replicas > 1:
        devices = _ensure_logical_cpus(num_cpu_replicas)
        logging.info("MirroredStrategy over %d logical CPU devices", len(devices))
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def is_tpu_strategy(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)


def strategy_kind(strategy: tf.distribute.Strategy) -> str:
    """'tpu', 'multi_worker', 'gpu', 'cpu_mirrored' or 'cpu' (for logs and defaults)."""
    if is_tpu_strategy(strategy):
        return "tpu"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        devices = strategy.extended.worker_devices
        return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu_mirrored"
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def task_info(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    """(task_type, task_id) of this process in a multi-worker cluster; (None, None) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or is_tpu_strategy(strategy):
        return None, None
    return resolver.task_type, resolver.task_id


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Number of hosts running input pipelines (1 unless multi-worker)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return max(1, _cluster_size(_tf_config()))
    return 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints/summaries/config into the model dir.

    The 'chief' task, or worker 0 when the cluster has no chief; always True outside multi-worker.
    """
    task_type, task_id = task_info(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    has_chief = bool(_tf_config().get("cluster", {}).get("chief"))
    return task_type == "worker" and task_id == 0 and not has_chief


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy,
                           what: str = "batch size") -> int:
    """``global_batch_size / replicas``; a `StrategyError` when it does not divide evenly."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size < 1 or global_batch_size % replicas:
        raise StrategyError(
            f"global {what} {global_batch_size} is not divisible by the {replicas} replicas; "
            f"use a multiple of {replicas}")
    return global_batch_size // replicas


def resolve_jit_compile(setting, strategy: tf.distribute.Strategy) -> bool:
    """``'auto'``: XLA on TPU/GPU, not on CPU (where XLA makes these models ~8x slower to train).

    Also False for MirroredStrategy over logical CPU devices, where XLA cannot compile variables
    that live on another logical device.
    """
    if isinstance(setting, bool):
        return setting
    text = str(setting).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    if text != "auto":
        raise StrategyError(f"jit_compile must be 'auto', true or false; got {setting!r}")
    kind = strategy_kind(strategy)
    if kind == "multi_worker":
        return bool(tf.config.list_physical_devices("GPU"))
    return kind in ("tpu", "gpu")


def use_bfloat16(config, strategy: tf.distribute.Strategy) -> bool:
    """``train.use_bfloat16``; None = True on TPU only."""
    if config.train.use_bfloat16 is None:
        return is_tpu_strategy(strategy)
    return bool(config.train.use_bfloat16)


def resolve_execution(config, strategy: tf.distribute.Strategy) -> tuple[bool, bool]:
    """Settles ``train.use_bfloat16`` and ``train.jit_compile`` for ``strategy``, in place.

    Checks that the training batch splits over the replicas; returns (bfloat16, jit_compile).
    Training and the search both run through this, so their saved configs record the same.
    """
    train = config.train
    per_replica_batch_size(train.batch_size, strategy, "train batch size")
    bfloat16 = use_bfloat16(config, strategy)
    jit_compile = resolve_jit_compile(train.jit_compile, strategy)
    train.use_bfloat16 = bfloat16
    train.jit_compile = str(jit_compile).lower()
    return bfloat16, jit_compile
