"""SavedModel export: signatures, equality with Keras, bad images, saved_model_cli, atomicity."""
# bazel: suite=export

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from autonl_tf.data import normalize, preprocessing
from autonl_tf.export import (
    SERVING_BYTES,
    SERVING_IMAGES,
    SERVING_NORMALIZED,
    ExportError,
    export_saved_model,
)
from autonl_tf.export import saved_model as saved_model_lib
from tests.support import demo_model as testing
from tests.support import programs

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32
# Stored images are larger than the model input, as in practice: the eval crop keeps
# 32 / (32 + 32) of the shorter side, i.e. the central 24x24 of these 48x48 images.
STORED_SIZE = 48


@pytest.fixture(scope="module")
def exported(demo_model, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("exports") / "demo"
    verification, _ = testing.demo_images(32, IMAGE_SIZE, seed=11)
    result = export_saved_model(
        demo_model, str(export_dir), image_size=IMAGE_SIZE, labels=testing.demo_labels(),
        top_k=3, verification_images=np.asarray(normalize(verification)),
        model_spec=testing.demo_spec())
    return export_dir, result


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[0]))


def _client_side_images(encoded: list[bytes]) -> np.ndarray:
    """What a client of serving_images does: central crop + bicubic resize, rounded to uint8."""
    rows = []
    for data in encoded:
        image = preprocessing.decode_and_crop(
            tf.constant(data),
            lambda shape: preprocessing.center_crop_window(shape, IMAGE_SIZE, 32))
        rows.append(np.round(preprocessing.resize(image, IMAGE_SIZE).numpy()).astype(np.uint8))
    return np.stack(rows)


def test_reloaded_signatures_give_the_keras_logits(demo_model, loaded):
    pixels, _ = testing.demo_images(16, IMAGE_SIZE, seed=3)
    normalised = np.asarray(normalize(pixels))
    expected = demo_model(normalised, training=False).numpy()

    from_normalised = loaded.signatures[SERVING_NORMALIZED](images=tf.constant(normalised))
    from_pixels = loaded.signatures[SERVING_IMAGES](images=tf.constant(pixels))

    np.testing.assert_allclose(from_normalised["logits"].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_pixels["logits"].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_result_reports_the_saved_model_check(exported):
    _, result = exported
    assert result.signatures == (SERVING_BYTES, SERVING_IMAGES, SERVING_NORMALIZED)
    assert result.saved_model_agreement.top1_agreement == 1.0
    assert result.saved_model_agreement.max_abs_logit_diff < 1e-4


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_bytes_signature_agrees_with_images_signature(loaded, image_format):
    pixels, labels = testing.demo_images(40, STORED_SIZE, seed=5)
    encoded = testing.encode_images(pixels, image_format)

    served = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant(encoded))
    logits = loaded.signatures[SERVING_IMAGES](
        images=tf.constant(_client_side_images(encoded)))["logits"].numpy()

    classes = served["classes"].numpy()
    assert classes.shape == (40, 3)
    assert served["valid"].numpy().all()
    np.testing.assert_array_equal(classes[:, 0], logits.argmax(-1))
    assert (classes[:, 0] == labels).mean() >= 0.9  # the demo model has learnt the task
    probabilities = served["probabilities"].numpy()
    assert np.all(np.diff(probabilities, axis=-1) <= 0) and np.all(probabilities.sum(-1) <= 1.0001)
    names = np.array(testing.demo_labels())[classes]
    np.testing.assert_array_equal(served["class_names"].numpy().astype(str), names)


def test_bad_images_are_flagged_and_the_rest_of_the_batch_is_served(loaded):
    pixels, _ = testing.demo_images(3, STORED_SIZE, seed=9)
    jpegs = testing.encode_images(pixels)
    png = testing.encode_images(pixels[2:], "PNG")[0]
    gif = b"GIF89a" + b"\x00" * 40
    batch = [jpegs[0], b"definitely not an image", jpegs[1][:len(jpegs[1]) // 3], png, b"",
             gif, b"\xff\xd8\xff\xe0 corrupt jpeg body"]

    served = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant(batch))
    alone = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant([jpegs[0], png]))

    valid = served["valid"].numpy()
    np.testing.assert_array_equal(valid, [True, False, False, True, False, False, False])
    classes, probabilities = served["classes"].numpy(), served["probabilities"].numpy()
    assert np.all(classes[~valid] == -1) and np.all(probabilities[~valid] == 0)
    assert np.all(served["class_names"].numpy()[~valid] == b"")
    np.testing.assert_array_equal(classes[valid], alone["classes"].numpy())
    np.testing.assert_allclose(probabilities[valid], alone["probabilities"].numpy(), atol=1e-6)


def test_empty_batch_gives_empty_outputs(loaded):
    served = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant([], tf.string))
    assert served["classes"].shape == (0, 3) and served["valid"].shape == (0,)


def test_export_card_and_labels_file(exported):
    export_dir, _ = exported
    card = json.loads((export_dir / "export_card.json").read_text())
    assert set(card["signatures"]) == {SERVING_BYTES, SERVING_IMAGES, SERVING_NORMALIZED}
    assert card["model"]["macs"] == testing.demo_spec().cost(IMAGE_SIZE, 10).macs
    assert card["model"]["params"] > 0
    # Per signature, what the client does and what the model does inside
    # (tests/test_export_contract.py runs a client built from these fields alone).
    signatures = card["signatures"]
    assert signatures[SERVING_BYTES]["client"]["steps"] == []
    assert [s["op"] for s in signatures[SERVING_BYTES]["in_model"]["steps"]] == [
        "decode", "central_crop", "resize", "normalize"]
    assert signatures[SERVING_IMAGES]["in_model"]["steps"] == [{
        "op": "normalize", "mean": list(preprocessing.IMAGENET_MEAN),
        "std": list(preprocessing.IMAGENET_STD)}]
    assert signatures[SERVING_IMAGES]["client"]["steps"][1] == {"op": "central_crop",
                                                                "fraction": 0.5}
    assert signatures[SERVING_NORMALIZED]["in_model"]["steps"] == []
    assert "preprocessing" not in card
    assert (export_dir / "labels.txt").read_text().splitlines() == testing.demo_labels()
    assert not [p for p in export_dir.parent.iterdir() if p.name.startswith(".")]


def _run(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               HOME=str(tmp_path), TMPDIR=str(tmp_path))
    return programs.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=300)


def _bytes_literal(data: bytes) -> str:
    # Every byte escaped: --input_exprs splits on ';', which a repr() could contain.
    return "b'" + "".join(f"\\x{byte:02x}" for byte in data) + "'"


@pytest.mark.slow
def test_saved_model_cli_runs_both_signatures(exported, loaded, tmp_path):
    export_dir, _ = exported
    saved_model_cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    pixels, _ = testing.demo_images(2, STORED_SIZE, seed=13)
    jpegs = testing.encode_images(pixels)
    bytes_out = tmp_path / "bytes_out"
    completed = _run([
        saved_model_cli, "run", "--dir", str(export_dir), "--tag_set", "serve",
        "--signature_def", SERVING_BYTES, "--outdir", str(bytes_out),
        "--input_exprs",
        f"image_bytes=[{_bytes_literal(jpegs[0])}, b'garbage', {_bytes_literal(jpegs[1])}]"],
        tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = loaded.signatures[SERVING_BYTES](image_bytes=tf.constant(jpegs))
    np.testing.assert_array_equal(np.load(bytes_out / "valid.npy"), [True, False, True])
    np.testing.assert_array_equal(np.load(bytes_out / "classes.npy")[[0, 2]],
                                  expected["classes"].numpy())

    images = np.asarray(testing.demo_images(3, IMAGE_SIZE, seed=17)[0])
    np.save(tmp_path / "images.npy", images)
    images_out = tmp_path / "images_out"
    completed = _run([
        saved_model_cli, "run", "--dir", str(export_dir), "--tag_set", "serve",
        "--signature_def", SERVING_IMAGES, "--outdir", str(images_out),
        "--inputs", f"images={tmp_path / 'images.npy'}"], tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = loaded.signatures[SERVING_IMAGES](images=tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(np.load(images_out / "logits.npy"), expected, atol=1e-4)


# ----------------------------------------------------------------------------- atomicity


def _previous_export(path: pathlib.Path) -> None:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"previous")
    (path / "sentinel.txt").write_text("keep me")


def test_failed_save_leaves_nothing_and_keeps_a_previous_export(small_classifier, tmp_path,
                                                                monkeypatch):
    fresh, previous = tmp_path / "fresh", tmp_path / "previous"
    _previous_export(previous)

    def failing_save(obj, export_dir, signatures=None, options=None):
        pathlib.Path(export_dir, "saved_model.pb").write_bytes(b"half written")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(saved_model_lib.tf.saved_model, "save", failing_save)
    for target in (fresh, previous):
        with pytest.raises(OSError, match="simulated"):
            export_saved_model(small_classifier, str(target), image_size=IMAGE_SIZE)

    assert not fresh.exists()
    assert (previous / "saved_model.pb").read_bytes() == b"previous"
    assert (previous / "sentinel.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous"]  # no staging leftovers


def test_interrupted_tflite_step_leaves_nothing(small_classifier, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(saved_model_lib, "convert_to_tflite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(small_classifier, str(tmp_path / "out"), image_size=IMAGE_SIZE,
                           tflite_modes="float32")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_a_previous_export_as_a_whole(small_classifier, tmp_path):
    target = tmp_path / "export"
    _previous_export(target)
    export_saved_model(small_classifier, str(target), image_size=IMAGE_SIZE)
    assert not (target / "sentinel.txt").exists()
    assert (target / "export_card.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_refuses_to_replace_a_directory_that_is_not_an_export(small_classifier, tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_saved_model(small_classifier, str(tmp_path), image_size=IMAGE_SIZE)
    assert (tmp_path / "notes.txt").read_text() == "precious"


# ----------------------------------------------------------------------------- bad arguments


def test_bad_arguments_are_rejected_before_writing(demo_model, tmp_path):
    target = str(tmp_path / "out")
    with pytest.raises(ValueError, match="3 labels for a model with 10 classes"):
        export_saved_model(demo_model, target, image_size=IMAGE_SIZE, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="valid modes: float32, float16, dynamic_int8, int8"):
        export_saved_model(demo_model, target, image_size=IMAGE_SIZE, tflite_modes="fp8")
    with pytest.raises(ValueError, match="needs calibration_images"):
        export_saved_model(demo_model, target, image_size=IMAGE_SIZE, tflite_modes="int8")
    with pytest.raises(ValueError, match="does not match image_size"):
        export_saved_model(demo_model, target, image_size=64)
    assert list(tmp_path.iterdir()) == []
