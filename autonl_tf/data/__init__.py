"""Input pipeline of autonl_tf: ImageNet-layout TFRecords, TFDS, and a generated demo set.

    cfg = default_data_config()               # or default_data_config('embedded')
    cfg = prepare(cfg)                        # resolves data_dir / sizes (optional: the
                                              # builders call it too)
    train = build_train_dataset(cfg, 256)     # (images [256,S,S,3], labels [256] int32)
    evals = build_eval_dataset(cfg, 256)      # (images, labels, weights [256] float32)
    model.evaluate(evals)                     # weights -> sample_weight; finite dataset

With tf.distribute: strategy.distribute_datasets_from_function(
    lambda ctx: build_train_dataset(cfg, global_batch, ctx)).
"""

from autonl_tf._lazy import lazy_attributes
from autonl_tf.data.config import default_data_config
from autonl_tf.data.errors import DataError

# The rest needs TensorFlow and is imported on first use: config files call
# `default_data_config` while the commands parse their flags, before TensorFlow is loaded.
_WHERE = {
    "ensure_embedded_dataset": "embedded",
    "build_eval_dataset": "pipeline",
    "build_train_dataset": "pipeline",
    "num_eval_batches": "pipeline",
    "num_eval_examples": "pipeline",
    "class_names": "preparation",
    "prepare": "preparation",
    "IMAGENET_MEAN": "preprocessing",
    "IMAGENET_STD": "preprocessing",
    "normalize": "preprocessing",
    "preprocess_for_eval": "preprocessing",
    "preprocess_for_train": "preprocessing",
    "read_labels_file": "records",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataError",
    "build_eval_dataset",
    "build_train_dataset",
    "class_names",
    "default_data_config",
    "ensure_embedded_dataset",
    "normalize",
    "num_eval_batches",
    "num_eval_examples",
    "prepare",
    "preprocess_for_eval",
    "preprocess_for_train",
    "read_labels_file",
]
