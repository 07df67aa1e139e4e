"""TFLite Metadata for image classifiers, as MediaPipe's ImageClassifier and the Task Library read it.

`embed_classifier_metadata` writes into a .tflite what an app needs to run it without our code:
the model's name and description, the input's colour space and normalisation ``(pixel - mean) /
std`` (MediaPipe applies it to the RGB 0..255 image it was given; it takes one mean and one std
for all channels, so our models normalise per channel inside and declare mean 0, std 1), and a
labels file packed
into the model (a zip archive appended to the flatbuffer, ``TENSOR_AXIS_LABELS``: line i names
class i of the output). The metadata flatbuffer follows the TFLite Metadata schema, built with
the schema classes MediaPipe ships (``metadata_schema_py_generated``); MediaPipe's own writer
(``metadata_writers``) needs a native module its 1.2 wheels do not include.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Sequence

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as tflite_fb

__all__ = ["LABELS_FILE", "METADATA_MEAN", "METADATA_NAME", "METADATA_STD", "ClassifierMetadata",
           "embed_classifier_metadata", "read_classifier_metadata"]

# The normalisation our models declare: the reader computes (pixel - 0) / 1, i.e. hands the RGB
# pixels over unchanged, and the model normalises per channel inside (the cards' 'in_model').
METADATA_MEAN, METADATA_STD = 0.0, 1.0
METADATA_NAME = "TFLITE_METADATA"  # the model metadata entry the readers look for
LABELS_FILE = "labels.txt"
_METADATA_IDENTIFIER = b"M001"
_MODEL_IDENTIFIER = b"TFL3"
# Oldest metadata parser that reads every field written here (normalisation, image properties,
# an axis-labels file: all in the schema's first version).
_MIN_PARSER_VERSION = "1.0.0"


def _schema():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    return schema


def _metadata_flatbuffer(name: str, description: str, labels: Sequence[str], mean: float,
                         std: float) -> bytes:
    schema = _schema()
    normalization = schema.NormalizationOptionsT()
    normalization.mean, normalization.std = [float(mean)], [float(std)]
    normalize = schema.ProcessUnitT()
    normalize.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    normalize.options = normalization

    image_properties = schema.ImagePropertiesT()
    image_properties.colorSpace = schema.ColorSpaceType.RGB
    image = schema.TensorMetadataT()
    image.name = "image"
    image.description = (
        "RGB image, pixel values 0..255, centrally cropped and resized to the input size; "
        "the reader feeds (pixel - mean) / std with the mean and std given here" + (
            " (0 and 1: the pixels as they are; the model normalises them per channel inside)"
            if (mean, std) == (METADATA_MEAN, METADATA_STD) else ""))
    image.content = schema.ContentT()
    image.content.contentPropertiesType = schema.ContentProperties.ImageProperties
    image.content.contentProperties = image_properties
    image.processUnits = [normalize]
    image.stats = schema.StatsT()
    image.stats.min = [(0.0 - mean) / std]
    image.stats.max = [(255.0 - mean) / std]

    labels_file = schema.AssociatedFileT()
    labels_file.name = LABELS_FILE
    labels_file.description = "Class names, line i names output i."
    labels_file.type = schema.AssociatedFileType.TENSOR_AXIS_LABELS
    logits = schema.TensorMetadataT()
    logits.name = "logits"
    logits.description = f"Unnormalised scores of the {len(labels)} classes (softmax gives " \
                         "probabilities); the highest is the predicted class."
    logits.content = schema.ContentT()
    logits.content.contentPropertiesType = schema.ContentProperties.FeatureProperties
    logits.content.contentProperties = schema.FeaturePropertiesT()
    logits.associatedFiles = [labels_file]

    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [logits]
    metadata = schema.ModelMetadataT()
    metadata.name = name
    metadata.description = description
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = _MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(metadata.Pack(builder), file_identifier=_METADATA_IDENTIFIER)
    return bytes(builder.Output())


def embed_classifier_metadata(model_bytes: bytes, *, name: str, description: str,
                              labels: Sequence[str], mean: float = METADATA_MEAN,
                              std: float = METADATA_STD) -> bytes:
    """The .tflite with TFLite Metadata and a packed labels file; ops and tensors unchanged.

    Args:
      model_bytes: a classifier .tflite: one image input [1, S, S, 3], one output [1, C].
      name, description: shown by the Task Library / MediaPipe and model viewers.
      labels: C class names (no newlines).
      mean, std: the client feeds ``(pixel - mean) / std`` (RGB pixels 0..255); the defaults
        (0, 1) for our models, which take pixels.
    """
    if any("\n" in label for label in labels):
        raise ValueError("class names must not contain newlines (one label per line)")
    if std <= 0:
        raise ValueError(f"the normalisation std must be positive, got {std}")
    model = tflite_fb.ModelT.InitFromObj(tflite_fb.Model.GetRootAs(model_bytes, 0))
    if any(m.name.decode() == METADATA_NAME for m in model.metadata or []):
        raise ValueError("the model already has TFLite Metadata")
    buffer = tflite_fb.BufferT()
    buffer.data = np.frombuffer(
        _metadata_flatbuffer(name, description, labels, mean, std), np.uint8)
    model.buffers.append(buffer)
    entry = tflite_fb.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=_MODEL_IDENTIFIER)
    packed = io.BytesIO(bytes(builder.Output()))
    # Associated files: a zip archive appended to the flatbuffer (what the readers unpack).
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return packed.getvalue()


@dataclasses.dataclass(frozen=True)
class ClassifierMetadata:
    """What `read_classifier_metadata` found: name, description, normalisation, labels."""

    name: str
    description: str
    mean: float
    std: float
    labels: list[str]


def read_classifier_metadata(model_bytes: bytes) -> ClassifierMetadata:
    """Reads back what `embed_classifier_metadata` wrote (ValueError when there is none)."""
    schema = _schema()
    model = tflite_fb.Model.GetRootAs(model_bytes, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            break
    else:
        raise ValueError("the model has no TFLite Metadata")
    metadata = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(data, 0))
    (subgraph,) = metadata.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    (normalization,) = [unit.options for unit in image.processUnits]
    (logits,) = subgraph.outputTensorMetadata
    (labels_file,) = logits.associatedFiles
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        labels = archive.read(labels_file.name.decode()).decode().splitlines()
    return ClassifierMetadata(metadata.name.decode(), metadata.description.decode(),
                              float(normalization.mean[0]), float(normalization.std[0]), labels)
