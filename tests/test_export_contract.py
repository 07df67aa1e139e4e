"""The cards' client contract: a client that reads only the card preprocesses real image files
and gets the SavedModel's classes, through every signature and every TFLite model.

Each model input of an export says in its card what the client does (``client.steps``, then
the ``client.input`` tensor) and what the model does inside (``in_model.steps``). The client
below knows the meaning of each step name (`autonl_tf.export.cards.STEP_MEANINGS`) and nothing
of this package: it decodes with PIL, crops and resizes as the step parameters say. A card
that lists a normalisation the model also performs (the old ``preprocessing.normalization``
beside "the model normalises them itself") makes such a client score at chance.
"""
# bazel: suite=export

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from autonl_tf.data import normalize
from autonl_tf.export import (
    SERVING_BYTES,
    SERVING_IMAGES,
    SERVING_NORMALIZED,
    export_saved_model,
    read_classifier_metadata,
)
from tests.support import demo_model as testing

IMAGE_SIZE = 32
CROP_PADDING = 16  # the central 2/3 of the shorter side
STORED_SIZE = 48  # eval files larger than the model input, as in practice
NUM_IMAGES = 100


@pytest.fixture(scope="module")
def exported(demo_model, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("contract") / "demo"
    calibration, _ = testing.demo_images(64, IMAGE_SIZE, seed=31)
    export_saved_model(
        demo_model, str(export_dir), image_size=IMAGE_SIZE, labels=testing.demo_labels(),
        crop_padding=CROP_PADDING, tflite_modes="float32,int8", int8_io=True,
        calibration_images=np.asarray(normalize(calibration)))
    return export_dir


@pytest.fixture(scope="module")
def eval_files():
    """(JPEG files of the demo task at 48 px, their labels)."""
    images, labels = testing.demo_images(NUM_IMAGES, STORED_SIZE, seed=32)
    return testing.encode_images(images), labels


def _apply(step: dict, image: np.ndarray) -> np.ndarray:
    """One card step, as a client written from STEP_MEANINGS performs it."""
    op = step["op"]
    if op == "central_crop":
        height, width = image.shape[:2]
        side = max(1, int(np.float32(step["fraction"]) * np.float32(min(height, width))))
        top, left = (height - side + 1) // 2, (width - side + 1) // 2
        return image[top:top + side, left:left + side]
    if op == "resize":
        resized = tf.image.resize(image[None].astype(np.float32), step["size"],
                                  method=step["method"], antialias=step["antialias"])[0]
        return np.clip(resized.numpy(), *step["clip"])
    if op == "normalize":
        return (image - np.float32(step["mean"])) / np.float32(step["std"])
    if op == "round_to_uint8":
        return np.round(image).astype(np.uint8)
    if op == "quantize":
        return np.clip(np.round(image / step["scale"] + step["zero_point"]), -128, 127)
    raise AssertionError(f"the card names a step this client does not know: {op}")


def client_input(contract: dict, data: bytes, extra_steps: list[dict] = ()) -> np.ndarray:
    """A model input made from an encoded image by the card's client steps (batch of one)."""
    steps = contract["client"]["steps"]
    assert steps[0] == {"op": "decode", "color": "RGB", "formats": ["JPEG", "PNG"]}
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    for step in [*steps[1:], *extra_steps]:
        image = _apply(step, image)
    return image[None].astype(contract["client"]["input"]["dtype"])


def _savedmodel_top1(loaded, files) -> np.ndarray:
    served = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant(files))
    assert served["valid"].numpy().all()
    return served["classes"].numpy()[:, 0]


def _tflite_top1(path, card: dict, files, extra_steps=()) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    top1 = []
    for data in files:
        interpreter.set_tensor(input_detail["index"], client_input(card, data, extra_steps))
        interpreter.invoke()
        logits = interpreter.get_tensor(output_detail["index"])[0].astype(np.float32)
        if "quantization" in card["output"]:  # monotone: the argmax needs no dequantising
            logits = (logits - card["output"]["quantization"]["zero_point"]) * \
                card["output"]["quantization"]["scale"]
        top1.append(int(np.argmax(logits)))
    return np.array(top1)


@pytest.mark.slow
def test_a_client_driven_by_the_cards_gets_the_savedmodel_top1(exported, eval_files):
    files, labels = eval_files
    loaded = tf.saved_model.load(str(exported))
    expected = _savedmodel_top1(loaded, files)
    assert np.mean(expected == labels) >= 0.9  # a network that classifies these files
    export_card = json.loads((exported / "export_card.json").read_text())

    for signature in (SERVING_IMAGES, SERVING_NORMALIZED):
        contract = export_card["signatures"][signature]
        batch = np.concatenate([client_input(contract, data) for data in files])
        logits = loaded.signatures[signature](images=tf.constant(batch))["logits"].numpy()
        np.testing.assert_array_equal(np.argmax(logits, -1), expected, err_msg=signature)

    for mode in ("float32", "int8"):
        card = json.loads((exported / f"model_{mode}.json").read_text())
        top1 = _tflite_top1(exported / f"model_{mode}.tflite", card, files)
        # float32 is the SavedModel's arithmetic; int8 rounds (its export check: >= 90%).
        assert np.mean(top1 == expected) >= (1.0 if mode == "float32" else 0.95), mode
        # The misreading the old card invited: normalising what the model normalises itself.
        doubled = _tflite_top1(exported / f"model_{mode}.tflite", card, files,
                               extra_steps=card["in_model"]["steps"])
        assert np.mean(doubled == expected) < 0.5, mode


def test_cards_split_the_eval_preprocessing_and_match_the_tflite_metadata(exported):
    export_card = json.loads((exported / "export_card.json").read_text())
    eval_ops = ["decode", "central_crop", "resize", "normalize"]
    contracts = [export_card["signatures"][s] for s in export_card["signatures"]]
    contracts += [json.loads((exported / f"model_{m}.json").read_text())
                  for m in ("float32", "int8")]
    for contract in contracts:
        client = [s["op"] for s in contract["client"]["steps"]]
        in_model = [s["op"] for s in contract["in_model"]["steps"]]
        # Each input does the eval preprocessing exactly once, split between the two sides
        # (plus the client's conversion to the input dtype).
        assert [op for op in client if op in eval_ops] + in_model == eval_ops
        assert set(contract["client"]["how"]) == set(client)
        for step in (*contract["client"]["steps"], *contract["in_model"]["steps"]):
            if step["op"] == "central_crop":
                assert step["fraction"] == IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING)
    for mode in ("float32", "int8"):
        card = json.loads((exported / f"model_{mode}.json").read_text())
        metadata = read_classifier_metadata((exported / f"model_{mode}.tflite").read_bytes())
        # MediaPipe applies the metadata's (pixel - mean) / std: the identity, as the client
        # steps (no normalisation) say; the model normalises inside.
        assert (metadata.mean, metadata.std) == (0.0, 1.0)
        assert card["tflite_metadata"]["normalization"] == {"mean": [0.0], "std": [1.0]}
        assert "normalize" not in [s["op"] for s in card["client"]["steps"]]
        assert [s["op"] for s in card["in_model"]["steps"]] == ["normalize"]
    int8_card = json.loads((exported / "model_int8.json").read_text())
    assert int8_card["client"]["input"]["dtype"] == "int8"
    assert int8_card["client"]["steps"][-1]["op"] == "quantize"
