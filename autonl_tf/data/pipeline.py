"""tf.data pipelines: sharded reading, preprocessing, static-shape batches.

Train elements: (images [b, S, S, 3] float32|bfloat16, labels [b] int32), infinite, remainder
dropped. Eval elements: (images, labels, weights [b] float32), finite: padded with weight-0
examples so that every input pipeline yields the same number of full batches and every real
image is counted exactly once across pipelines and replicas. With an InputContext, b is the
per-replica batch size (global / num_replicas_in_sync), as `distribute_datasets_from_function`
expects.
"""

from __future__ import annotations

import logging
import math
import secrets

import ml_collections
import tensorflow as tf

from autonl_tf.data import diagnose, preprocessing, sources
from autonl_tf.data.errors import DataError
from autonl_tf.data.preparation import prepare

AUTOTUNE = tf.data.AUTOTUNE
_COUNT_LIMIT_BYTES = 1 << 30

_log = logging.getLogger(__name__)


class _Layout:
    """How one input pipeline fits in the distributed job."""

    def __init__(self, global_batch_size: int, ctx: tf.distribute.InputContext | None):
        if global_batch_size < 1:
            raise DataError(f"global_batch_size must be >= 1, got {global_batch_size}")
        if ctx is None:
            self.num_pipelines, self.pipeline_id, self.replicas = 1, 0, 1
            self.batch = global_batch_size
            return
        replicas = ctx.num_replicas_in_sync
        self.num_pipelines, self.pipeline_id = ctx.num_input_pipelines, ctx.input_pipeline_id
        if global_batch_size % replicas or replicas % self.num_pipelines:
            raise DataError(
                f"global batch size {global_batch_size} must be divisible by the "
                f"{replicas} replicas, themselves spread evenly over "
                f"{self.num_pipelines} input pipelines"
            )
        self.batch = ctx.get_per_replica_batch_size(global_batch_size)
        self.replicas = replicas // self.num_pipelines  # replicas fed by this pipeline


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    # Sharding is done here by InputContext; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.experimental_optimization.map_parallelization = True
    options.threading.max_intra_op_parallelism = 1  # parallelism comes from tf.data itself
    return options


def _image_dtype(cfg: ml_collections.ConfigDict) -> tf.DType:
    if cfg.dtype not in ("float32", "bfloat16"):
        raise DataError(f"data.dtype={cfg.dtype!r}: expected 'float32' or 'bfloat16'")
    return tf.as_dtype(cfg.dtype)


def _checked_label(label: tf.Tensor, cfg: ml_collections.ConfigDict, offset: int) -> tf.Tensor:
    """Stored label (int64 []) -> 0-based int32 label, failing when it is out of range.

    Per record, before `ignore_errors`: with data.skip_corrupt such records are skipped (and
    counted by `diagnose.count_damaged_records`); otherwise the failure is explained by
    `diagnose.explain_input_errors` as one line naming the shard and record.
    """
    label = tf.cast(label, tf.int32) - offset
    in_range = tf.logical_and(label >= 0, label < cfg.num_classes)
    check = tf.debugging.Assert(in_range, [
        f"label out of range: labels minus data.label_offset={offset} must lie in "
        f"[0, data.num_classes={cfg.num_classes}); 0-based label:", label])
    with tf.control_dependencies([check]):
        return tf.identity(label)


def _seed_base(cfg: ml_collections.ConfigDict) -> int:
    # Stateless augmentation seeds: fixed in deterministic mode, fresh for every pipeline
    # otherwise (so that restarts do not replay the same crops).
    return int(cfg.seed) if cfg.deterministic else secrets.randbits(31)


# ----------------------------------------------------------------------------- train


def build_train_dataset(
    cfg: ml_collections.ConfigDict,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Infinite training batches (images [b, S, S, 3] cfg.dtype, labels [b] int32 0-based).

    b = global_batch_size without input_context, else the per-replica batch size; each input
    pipeline reads a disjoint part of the data (whole files when there are enough of them).
    """
    cfg = prepare(cfg)
    layout = _Layout(global_batch_size, input_context)
    source = sources.make_source(cfg, cfg.train_split)
    diagnose.register_split(cfg, cfg.train_split)
    ds = source.records(
        training=True,
        num_pipelines=layout.num_pipelines,
        pipeline_id=layout.pipeline_id,
        deterministic=cfg.deterministic,
        seed=cfg.seed if cfg.deterministic else None,
    )
    if cfg.cache:
        ds = ds.cache()
    ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed if cfg.deterministic else None,
                    reshuffle_each_iteration=True)
    ds = ds.repeat()
    dtype = _image_dtype(cfg)
    base = _seed_base(cfg)
    num_pipelines, pipeline_id = layout.num_pipelines, layout.pipeline_id
    offset = source.label_offset

    @tf.autograph.experimental.do_not_convert
    def preprocess(index, element):
        image_bytes, label = source.decode(element)
        # Pipelines draw disjoint seed streams: element i of pipeline p uses [base, i*P + p].
        seed = tf.stack([tf.constant(base, tf.int64), index * num_pipelines + pipeline_id])
        image = preprocessing.preprocess_for_train(
            image_bytes, cfg.image_size, seed,
            random_crop=cfg.random_crop, area_range=tuple(cfg.crop_area_range),
            aspect_range=tuple(cfg.crop_aspect_range), crop_padding=cfg.eval_crop_padding,
            random_flip=cfg.random_flip, augment=cfg.augment,
            randaugment_num_layers=cfg.randaugment_num_layers,
            randaugment_magnitude=float(cfg.randaugment_magnitude), dtype=dtype,
        )
        return image, _checked_label(label, cfg, offset)

    ds = ds.enumerate().map(preprocess, num_parallel_calls=AUTOTUNE,
                            deterministic=cfg.deterministic)
    if cfg.skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(layout.batch, drop_remainder=True)
    ds = ds.prefetch(AUTOTUNE)
    return ds.with_options(_options(cfg.deterministic))


# ------------------------------------------------------------------------------ eval


def num_eval_examples(cfg: ml_collections.ConfigDict) -> int:
    """Number of real eval examples.

    From the builder's metadata / TFDS info (via prepare); else counted when the eval shards
    are small (<= 1 GiB: a quick pass, and a wrong configured count would drop or pad images);
    else data.num_eval_examples as configured (ImageNet: 50000; also used without a data_dir),
    or counted when that is 0.
    """
    cfg = prepare(cfg)
    if cfg.dataset.startswith("tfds:") or _from_metadata(cfg):
        return int(cfg.num_eval_examples)
    if cfg.num_eval_examples > 0 and not cfg.data_dir:
        return int(cfg.num_eval_examples)  # planning without data: trust the config
    source = sources.make_source(cfg, cfg.eval_split)
    if cfg.num_eval_examples > 0 and source.total_bytes() > _COUNT_LIMIT_BYTES:
        return int(cfg.num_eval_examples)
    counted = source.count()
    if cfg.num_eval_examples > 0 and counted != cfg.num_eval_examples:
        _log.warning("data.num_eval_examples=%d but %s holds %d eval records: using %d",
                     cfg.num_eval_examples, cfg.data_dir, counted, counted)
    return counted


def _from_metadata(cfg: ml_collections.ConfigDict) -> bool:
    from autonl_tf.data import records

    return cfg.eval_split in records.read_metadata(cfg.data_dir).get("splits", {})


def num_eval_batches(
    cfg: ml_collections.ConfigDict, global_batch_size: int, num_input_pipelines: int = 1
) -> int:
    """Eval steps (global batches) that cover the eval split exactly once.

    Equals the length of the dataset of `build_eval_dataset` per replica; pass it as `steps`
    (or pass steps=None: the eval dataset is finite and equally long on every pipeline).
    num_input_pipelines: InputContext.num_input_pipelines (hosts); the number of replicas does
    not change the count.
    """
    total = num_eval_examples(cfg)
    if global_batch_size % num_input_pipelines:
        raise DataError(
            f"global batch size {global_batch_size} is not divisible by the "
            f"{num_input_pipelines} input pipelines"
        )
    per_pipeline = math.ceil(total / num_input_pipelines)  # record-level shards: at most this
    return max(1, math.ceil(per_pipeline / (global_batch_size // num_input_pipelines)))


def build_eval_dataset(
    cfg: ml_collections.ConfigDict,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Finite eval batches (images [b, S, S, 3], labels [b] int32, weights [b] float32).

    weights is 1.0 for real images and 0.0 for padding: use it as sample_weight. Every pipeline
    yields num_eval_batches(...) * (its replicas) batches of b, and the real images over all
    pipelines and replicas are the eval split, each exactly once.
    """
    cfg = prepare(cfg)
    layout = _Layout(global_batch_size, input_context)
    steps = num_eval_batches(cfg, global_batch_size, layout.num_pipelines)
    source = sources.make_source(cfg, cfg.eval_split)
    diagnose.register_split(cfg, cfg.eval_split)
    # Record-level sharding: an exact, known bound on the examples of each pipeline.
    ds = source.records(
        training=False,
        num_pipelines=layout.num_pipelines,
        pipeline_id=layout.pipeline_id,
        deterministic=True,
        seed=None,
    )
    if cfg.cache:
        ds = ds.cache()
    dtype = _image_dtype(cfg)
    offset = source.label_offset

    @tf.autograph.experimental.do_not_convert
    def preprocess(element):
        image_bytes, label = source.decode(element)
        image = preprocessing.preprocess_for_eval(
            image_bytes, cfg.image_size, dtype, crop_padding=cfg.eval_crop_padding
        )
        return image, _checked_label(label, cfg, offset), tf.constant(1.0)

    ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE, deterministic=True)
    if cfg.skip_corrupt:
        ds = ds.ignore_errors(log_warning=True)
    padding = tf.data.Dataset.from_tensors(
        (
            tf.zeros([cfg.image_size, cfg.image_size, 3], dtype),
            tf.constant(0, tf.int32),
            tf.constant(0.0),
        )
    ).repeat()
    ds = ds.concatenate(padding)
    ds = ds.batch(layout.batch, drop_remainder=True).take(steps * layout.replicas)
    ds = ds.prefetch(AUTOTUNE)
    return ds.with_options(_options(True))
