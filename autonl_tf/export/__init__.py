"""Export of trained classifiers: SavedModel for serving, TFLite for devices, with verification.

`export_saved_model(model, export_dir, image_size=..., ...)` exports a Keras model already in
memory; `export_from_model_dir(model_dir, export_dir, ...)` loads a training directory's EMA
weights first. The command line is ``python -m autonl_tf.export`` (see cli.py).
"""

from autonl_tf.export.atomic import ExportError, atomic_directory
from autonl_tf.export.metadata import embed_classifier_metadata, read_classifier_metadata
from autonl_tf.export.model_dir import (
    export_after_run,
    export_from_model_dir,
    export_trained_model,
)
from autonl_tf.export.saved_model import (
    ExportResult,
    TFLiteArtifact,
    VerificationError,
    export_saved_model,
    tflite_filename,
)
from autonl_tf.export.serving import SERVING_BYTES, SERVING_IMAGES, SERVING_NORMALIZED
from autonl_tf.export.tflite import (
    TFLITE_MODES,
    DelegatePartitions,
    convert_to_tflite,
    parse_tflite_modes,
    tflite_input,
    tflite_op_codes,
    xnnpack_partitions,
)
from autonl_tf.export.verify import Agreement, compare_logits, tflite_logits

__all__ = [
    "SERVING_BYTES",
    "SERVING_IMAGES",
    "SERVING_NORMALIZED",
    "TFLITE_MODES",
    "Agreement",
    "DelegatePartitions",
    "ExportError",
    "ExportResult",
    "TFLiteArtifact",
    "VerificationError",
    "atomic_directory",
    "compare_logits",
    "export_after_run",
    "convert_to_tflite",
    "export_from_model_dir",
    "export_saved_model",
    "embed_classifier_metadata",
    "export_trained_model",
    "parse_tflite_modes",
    "read_classifier_metadata",
    "tflite_filename",
    "tflite_input",
    "tflite_logits",
    "tflite_op_codes",
    "xnnpack_partitions",
]
