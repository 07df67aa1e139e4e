"""Export of trained classifiers: SavedModel for serving, TFLite for devices, with verification.

`export_saved_model(model, export_dir, image_size=..., ...)` exports a Keras model already in
memory; `export_from_model_dir(model_dir, export_dir, ...)` loads a training directory's EMA
weights first. The command line is ``python -m autonl_tf.export`` (see cli.py).
"""

from autonl_tf._lazy import lazy_attributes
from autonl_tf.export.modes import TFLITE_MODES, ExportError, parse_tflite_modes

# The rest needs TensorFlow and is imported on first use (`python -m autonl_tf.export` checks
# its flags first).
_WHERE = {
    "atomic_directory": "atomic",
    "embed_classifier_metadata": "metadata",
    "read_classifier_metadata": "metadata",
    "export_after_run": "model_dir",
    "export_from_model_dir": "model_dir",
    "export_trained_model": "model_dir",
    "ExportResult": "saved_model",
    "TFLiteArtifact": "saved_model",
    "VerificationError": "saved_model",
    "export_saved_model": "saved_model",
    "tflite_filename": "saved_model",
    "SERVING_BYTES": "serving",
    "SERVING_IMAGES": "serving",
    "SERVING_NORMALIZED": "serving",
    "DelegatePartitions": "tflite",
    "convert_to_tflite": "tflite",
    "tflite_input": "tflite",
    "tflite_op_codes": "tflite",
    "xnnpack_partitions": "tflite",
    "ProductCheck": "products",
    "check_int8_products": "products",
    "Agreement": "verify",
    "compare_logits": "verify",
    "tflite_logits": "verify",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

__all__ = [
    "SERVING_BYTES",
    "SERVING_IMAGES",
    "SERVING_NORMALIZED",
    "TFLITE_MODES",
    "Agreement",
    "DelegatePartitions",
    "ExportError",
    "ExportResult",
    "ProductCheck",
    "TFLiteArtifact",
    "VerificationError",
    "atomic_directory",
    "check_int8_products",
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
