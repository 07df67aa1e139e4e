"""TFLite Metadata in exported models, read back and used by a real client (MediaPipe).

MediaPipe's ImageClassifier is what a phone app would use: it reads the normalisation and the
labels from the model's metadata, so agreeing with the LiteRT interpreter on every image shows
that the exported files are usable as they are.
"""
# bazel: suite=export

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from autonl_tf.data import normalize
from autonl_tf.export import (
    embed_classifier_metadata,
    export_saved_model,
    read_classifier_metadata,
)
from tests.support import demo_model as testing

IMAGE_SIZE = 32
NUM_IMAGES = 200


@pytest.fixture(scope="module")
def exported(demo_model, tmp_path_factory):
    model = demo_model  # conftest.py: the demo network trained at 32 px
    calibration = np.asarray(normalize(testing.demo_images(64, IMAGE_SIZE, seed=3)[0]))
    export_dir = tmp_path_factory.mktemp("export") / "demo"
    result = export_saved_model(model, str(export_dir), image_size=IMAGE_SIZE,
                                labels=testing.demo_labels(), model_spec=testing.demo_spec(),
                                tflite_modes="float32,int8", calibration_images=calibration)
    return {artifact.mode: artifact.path for artifact in result.tflite}


def _litert_top1(path: str, pixels: np.ndarray) -> np.ndarray:
    """Top-1 of the LiteRT interpreter fed the same RGB pixels MediaPipe gets."""
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    top1 = []
    for image in pixels.astype(np.float32):
        interpreter.set_tensor(input_detail["index"], image[None])
        interpreter.invoke()
        top1.append(int(np.argmax(interpreter.get_tensor(output_detail["index"])[0])))
    return np.array(top1)


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_metadata_holds_labels_normalisation_and_description(exported, mode):
    with open(exported[mode], "rb") as f:
        metadata = read_classifier_metadata(f.read())
    assert metadata.labels == testing.demo_labels()
    assert (metadata.mean, metadata.std) == (0.0, 1.0)  # the model takes pixels
    assert mode in metadata.description and "10 classes" in metadata.description


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_mediapipe_image_classifier_agrees_with_litert(exported, mode):
    from mediapipe.tasks.python.core import base_options
    from mediapipe.tasks.python.vision import image_classifier
    from mediapipe.tasks.python.vision.core import image as mp_image

    pixels, _ = testing.demo_images(NUM_IMAGES, IMAGE_SIZE, seed=11)
    options = image_classifier.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=exported[mode]), max_results=1)
    labels = testing.demo_labels()
    with image_classifier.ImageClassifier.create_from_options(options) as classifier:
        categories = [classifier.classify(mp_image.Image(
            image_format=mp_image.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        ).classifications[0].categories[0] for image in pixels]
    expected = _litert_top1(exported[mode], pixels)
    np.testing.assert_array_equal([c.index for c in categories], expected)
    assert [c.category_name for c in categories] == [labels[i] for i in expected]


def test_metadata_is_written_once_and_labels_are_one_per_line(exported):
    with open(exported["float32"], "rb") as f:
        model_bytes = f.read()
    with pytest.raises(ValueError, match="already has TFLite Metadata"):
        embed_classifier_metadata(model_bytes, name="m", description="d", labels=["a"])
    with pytest.raises(ValueError, match="newlines"):
        embed_classifier_metadata(model_bytes, name="m", description="d", labels=["a\nb"])
