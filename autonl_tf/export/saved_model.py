"""`export_saved_model`: SavedModel + TFLite models + cards + verification, published atomically.

Layout of an export directory::

    saved_model.pb, variables/, assets/, fingerprint.pb   the SavedModel (signatures: serving.py)
    labels.txt                                             one class name per line (if labels)
    model_<mode>.tflite, model_<mode>.json                 per TFLite mode (with TFLite Metadata:
                                                           labels, normalisation) + its card
    export_card.json                                       signatures, preprocessing, cost, checks

Everything is written into a staging directory and renamed into place at the end (atomic.py);
if a verification falls below ``min_top1_agreement`` the export fails as a whole.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.errors import RunFailure
from autonl_tf.export import cards
from autonl_tf.export.atomic import atomic_directory
from autonl_tf.export.metadata import embed_classifier_metadata
from autonl_tf.export.modes import (
    MODE_DESCRIPTIONS,
    MODE_SELECTION,
    ExportError,
    parse_tflite_modes,
)
from autonl_tf.export.serving import (
    SERVING_BYTES,
    SERVING_IMAGES,
    SERVING_NORMALIZED,
    ClassifierServingModule,
)
from autonl_tf.export.tflite import assert_builtin_ops_only, convert_to_tflite
from autonl_tf.export.verify import Agreement, compare_logits, tflite_logits
from autonl_tf.models import ModelSpec

__all__ = ["ExportResult", "TFLiteArtifact", "VerificationError", "export_saved_model",
           "keras_logits", "tflite_filename"]

LABELS_FILENAME = "labels.txt"


class VerificationError(RunFailure, ExportError):
    """An exported model disagrees with the TensorFlow model more than allowed."""


@dataclasses.dataclass(frozen=True)
class TFLiteArtifact:
    mode: str
    path: str
    card_path: str
    size_bytes: int
    ops: tuple[str, ...]
    agreement: Agreement | None


@dataclasses.dataclass(frozen=True)
class ExportResult:
    export_dir: str
    signatures: tuple[str, ...]
    saved_model_agreement: Agreement | None
    tflite: tuple[TFLiteArtifact, ...]
    # optional TFLite mode -> why it was left out (its verification failed)
    tflite_left_out: dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """A human-readable table of what was written and how well it agrees with TF."""
        lines = [f"export: {self.export_dir}", f"  signatures: {', '.join(self.signatures)}"]
        header = f"  {'model':<26} {'size':>9}  agreement with the Keras model"
        lines.append(header)
        if self.saved_model_agreement is not None:
            lines.append(f"  {'saved_model':<26} {'':>9}  {self.saved_model_agreement.summary()}")
        for artifact in self.tflite:
            check = artifact.agreement.summary() if artifact.agreement else "not verified"
            size = f"{artifact.size_bytes / 1e6:.2f} MB"
            lines.append(f"  {os.path.basename(artifact.path):<26} {size:>9}  {check}")
        for mode, reason in self.tflite_left_out.items():
            lines.append(f"  {tflite_filename(mode):<26} {'left out':>9}  {reason}")
        return "\n".join(lines)


def tflite_filename(mode: str) -> str:
    return f"model_{mode}.tflite"


def keras_logits(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """float32 [N, C] logits of normalised images [N, S, S, 3] (inference mode)."""
    rows = [model(tf.constant(images[i:i + batch_size], tf.float32), training=False)
            for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(r, np.float32) for r in rows])


def _check_images(images: np.ndarray | None, image_size: int, what: str) -> np.ndarray | None:
    if images is None:
        return None
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3) or not len(images):
        raise ValueError(f"{what} must be normalised images [N>0, {image_size}, {image_size}, 3], "
                         f"got shape {images.shape}")
    return images


def _signature_card(module: ClassifierServingModule, image_size: int,
                    has_labels: bool) -> dict[str, Any]:
    size = image_size
    bytes_outputs = {
        "classes": f"int32 [B, {module.top_k}] class ids, best first; -1 for an invalid image",
        "probabilities": f"float32 [B, {module.top_k}] softmax probabilities; 0 when invalid",
        "valid": "bool [B] False when the image could not be decoded (not JPEG/PNG, corrupt)",
    }
    if has_labels:
        bytes_outputs["class_names"] = f"string [B, {module.top_k}]; empty when invalid"
    return {
        SERVING_BYTES: {"inputs": {"image_bytes": "string [B] encoded JPEG or PNG"},
                        "outputs": bytes_outputs,
                        "preprocessing": "in graph (see 'preprocessing')"},
        SERVING_IMAGES: {"inputs": {"images": f"uint8 [B, {size}, {size}, 3] RGB 0..255, "
                                              "already cropped and resized"},
                         "outputs": {"logits": "float32 [B, num_classes]"},
                         "preprocessing": "mean/std normalisation in graph"},
        SERVING_NORMALIZED: {"inputs": {"images": f"float32 [B, {size}, {size}, 3] normalised"},
                             "outputs": {"logits": "float32 [B, num_classes]"},
                             "preprocessing": "none (the model input)"},
    }


def _tflite_io_card(model_bytes: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)

    def describe(detail: dict) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        card = {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name}
        if scale:
            card["quantization"] = {"scale": float(scale), "zero_point": int(zero_point),
                                    "real_value": "(q - zero_point) * scale"}
        return card

    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    return {"input": describe(input_detail) | {
                "meaning": "RGB pixels 0..255, cropped and resized, batch 1; the model "
                           "normalises them itself"},
            "output": describe(output_detail) | {"meaning": "logits"}}


def _verify(name: str, agreement: Agreement, min_top1_agreement: float | None,
            failures: list[str]) -> None:
    logging.info("%s: %s", name, agreement.summary())
    if min_top1_agreement is not None and agreement.top1_agreement < min_top1_agreement:
        failures.append(f"{name}: {agreement.summary()} < required {min_top1_agreement:.2%}")


def _checked_arguments(model, image_size, modes, int8_io, calibration_images,
                       verification_images) -> tuple[np.ndarray | None, np.ndarray | None]:
    """ValueError on a bad argument combination; the images as float32 arrays."""
    if int8_io and "int8" not in modes:
        raise ValueError("int8_io applies to the full-integer TFLite mode: add 'int8' to the modes")
    if "int8" in modes and calibration_images is None:
        raise ValueError("the TFLite mode 'int8' needs calibration_images (representative "
                         "normalised images)")
    if model.input_shape[1:] != (image_size, image_size, 3):
        raise ValueError(f"model input shape {model.input_shape} does not match image_size "
                         f"{image_size} (expected [B, {image_size}, {image_size}, 3])")
    return (_check_images(calibration_images, image_size, "calibration_images"),
            _check_images(verification_images, image_size, "verification_images"))


def _write_saved_model(module: ClassifierServingModule, staging: str,
                       labels: Sequence[str] | None) -> None:
    started = time.time()
    # Serving needs no gradients; tracing them dominates the save time of full networks.
    tf.saved_model.save(module, staging, signatures=module.signatures,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    logging.info("SavedModel written in %.1fs", time.time() - started)
    if labels is not None:
        with tf.io.gfile.GFile(os.path.join(staging, LABELS_FILENAME), "w") as f:
            f.write("".join(f"{name}\n" for name in labels))


def _saved_model_agreement(staging: str, images: np.ndarray, reference: np.ndarray) -> Agreement:
    """The reloaded SavedModel's logits against the Keras model's, on ``images``."""
    reloaded = tf.saved_model.load(staging).signatures[SERVING_NORMALIZED]
    logits = np.concatenate([
        reloaded(images=tf.constant(images[i:i + 32]))["logits"].numpy()
        for i in range(0, len(images), 32)])
    return compare_logits(reference, logits)


def _export_card(module, info, image_size, crop_padding, labels, weights, reference,
                 min_top1_agreement, saved_model_agreement, artifacts, left_out) -> dict:
    """export_card.json: what was exported, from which weights, how it was verified."""
    return {
        "format": "autonl_tf export v1",
        **cards.export_metadata(),
        "model": dataclasses.asdict(info),
        "weights": dict(weights) if weights else None,
        "labels_file": LABELS_FILENAME if labels is not None else None,
        "top_k": module.top_k,
        "preprocessing": cards.preprocessing_card(image_size, crop_padding),
        "signatures": _signature_card(module, image_size, labels is not None),
        "bad_image_behaviour": "serving_default decodes each image on its own; an image that "
                               "is not a decodable JPEG/PNG gets valid=False, class -1, "
                               "probability 0, empty name; the rest of the batch is served",
        "verification": {
            "num_images": 0 if reference is None else len(reference),
            "min_top1_agreement": min_top1_agreement,
            "saved_model": saved_model_agreement.as_dict() if saved_model_agreement else None,
            "tflite": {a.mode: a.agreement.as_dict() if a.agreement else None
                       for a in artifacts},
        },
        "tflite": {a.mode: {"file": os.path.basename(a.path),
                            "card": os.path.basename(a.card_path),
                            "selection": MODE_SELECTION[a.mode]} for a in artifacts},
        "tflite_left_out": left_out,
    }


def export_saved_model(
    model: keras.Model,
    export_dir: str,
    *,
    image_size: int,
    labels: Sequence[str] | None = None,
    top_k: int = 5,
    crop_padding: int = 32,
    tflite_modes: str | Sequence[str] = (),
    calibration_images: np.ndarray | None = None,
    verification_images: np.ndarray | None = None,
    min_top1_agreement: float | None = None,
    int8_io: bool = False,
    model_spec: ModelSpec | str | None = None,
    width_multiplier: float = 1.0,
    weights: Mapping[str, Any] | None = None,
    optional_tflite_modes: Sequence[str] = (),
) -> ExportResult:
    """Exports a Keras classifier as a SavedModel (and optionally TFLite models), atomically.

    Args:
      model: input [B, S, S, 3] normalised float images, output [B, C] float32 logits, with the
        weights to export already in place (the EMA weights: `export_from_model_dir` loads them).
      export_dir: final directory; replaced as a whole if it holds an earlier export.
      image_size: S.
      labels: C class names, or None (then ``serving_default`` has no ``class_names`` output).
      top_k: classes returned by ``serving_default`` (capped at C).
      crop_padding: eval central crop keeps S / (S + crop_padding) of the shorter side
        (``data.eval_crop_padding``; 32 for ImageNet).
      tflite_modes: subset of `TFLITE_MODES`, as a list or 'float32,int8'.
      calibration_images: float32 [N, S, S, 3] normalised; required for the 'int8' mode.
      verification_images: float32 [N, S, S, 3] normalised; when given, the reloaded SavedModel
        and every TFLite model are compared with the Keras model on them.
      min_top1_agreement: fail the export if any verified model agrees on top-1 with the Keras
        model on a smaller fraction of the verification images (None: report only).
      int8_io: int8 input/output tensors for the 'int8' TFLite model.
      model_spec: the network's ModelSpec (or arch string) for MACs/params in the cards.
      width_multiplier: the width multiplier the model was built with (for the cost).
      weights: which weights these are, recorded in the card as "weights", e.g.
        {'checkpoint': 'ckpt-1875', 'step': 1875, 'ema': True}.
      optional_tflite_modes: modes of ``tflite_modes`` that are left out, with the reason in
        the export card, when their verification fails, instead of failing the export (the
        default modes of the command line: a default is only worth shipping when accurate).

    Returns:
      What was written and the measured agreements.

    Raises:
      ValueError: bad arguments (unknown TFLite mode, wrong label count, missing calibration).
      VerificationError: an agreement below ``min_top1_agreement``; nothing is published.
      ExportError: ``export_dir`` is a non-export directory, or writing failed.
    """
    modes = parse_tflite_modes(tflite_modes)
    calibration_images, verification_images = _checked_arguments(
        model, image_size, modes, int8_io, calibration_images, verification_images)
    module = ClassifierServingModule(model, image_size, labels, top_k, crop_padding)
    info = cards.model_info(model, image_size, model_spec, width_multiplier)
    reference = (keras_logits(model, verification_images)
                 if verification_images is not None else None)
    failures: list[str] = []

    with atomic_directory(export_dir) as staging:
        _write_saved_model(module, staging, labels)
        saved_model_agreement = None
        if reference is not None:
            saved_model_agreement = _saved_model_agreement(staging, verification_images,
                                                           reference)
            _verify("saved_model", saved_model_agreement, min_top1_agreement, failures)
        artifacts, left_out = [], {}
        for mode in modes:
            mode_failures: list[str] = []
            artifact = _export_tflite(model, staging, mode, info, labels, crop_padding,
                                      calibration_images, verification_images, reference,
                                      int8_io, min_top1_agreement, mode_failures)
            if mode_failures and mode in optional_tflite_modes:
                left_out[mode] = f"not verified: {'; '.join(mode_failures)}"
                logging.warning("TFLite %s left out: %s", mode, left_out[mode])
                os.remove(artifact.path)
                os.remove(artifact.card_path)
                continue
            failures += mode_failures
            artifacts.append(artifact)
        cards.write_json(os.path.join(staging, files.EXPORT_CARD_FILE), _export_card(
            module, info, image_size, crop_padding, labels, weights, reference,
            min_top1_agreement, saved_model_agreement, artifacts, left_out))
        if failures:
            raise VerificationError(
                "export verification failed, nothing was written to "
                f"{export_dir!r} (an earlier export there is untouched):\n  " + "\n  ".join(failures))

    published = tuple(dataclasses.replace(
        a, path=os.path.join(export_dir, os.path.basename(a.path)),
        card_path=os.path.join(export_dir, os.path.basename(a.card_path))) for a in artifacts)
    result = ExportResult(export_dir=export_dir, signatures=tuple(module.signatures),
                          saved_model_agreement=saved_model_agreement, tflite=published,
                          tflite_left_out=left_out)
    logging.info("%s", result.summary())
    return result


def _export_tflite(model, staging, mode, info, labels, crop_padding, calibration_images,
                   verification_images, reference, int8_io, min_top1_agreement,
                   failures) -> TFLiteArtifact:
    started = time.time()
    model_bytes = convert_to_tflite(model, info.image_size, mode, calibration_images,
                                    int8_io=int8_io and mode == "int8")
    ops = tuple(assert_builtin_ops_only(model_bytes, what=f"TFLite model {mode!r}"))
    model_bytes = embed_classifier_metadata(
        model_bytes, name=info.name,
        description=(f"{info.name} image classifier ({info.num_classes} classes, "
                     f"{info.image_size}x{info.image_size} RGB) exported by autonl_tf; TFLite "
                     f"mode {mode}: {MODE_DESCRIPTIONS[mode]}"),
        labels=(list(labels) if labels is not None
                else [f"class_{i}" for i in range(info.num_classes)]))
    logging.info("TFLite %s: %d bytes, converted in %.1fs", mode, len(model_bytes),
                 time.time() - started)
    path = os.path.join(staging, tflite_filename(mode))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(model_bytes)
    agreement = None
    if reference is not None:
        agreement = compare_logits(reference, tflite_logits(model_bytes, verification_images))
        _verify(f"tflite {mode}", agreement, min_top1_agreement, failures)
    card_path = os.path.splitext(path)[0] + ".json"
    cards.write_json(card_path, {
        "format": "autonl_tf tflite card v1",
        **cards.export_metadata(),
        "file": os.path.basename(path),
        "size_bytes": len(model_bytes),
        "selection": MODE_SELECTION[mode],
        "quantization": {"mode": mode, "description": MODE_DESCRIPTIONS[mode],
                         "calibration_images": (len(calibration_images)
                                                if mode == "int8" else None)},
        **_tflite_io_card(model_bytes),
        "batch_size": 1,
        "preprocessing": cards.preprocessing_card(info.image_size, crop_padding),
        "labels": list(labels) if labels is not None else None,
        "model": dataclasses.asdict(info),
        "ops": list(ops),
        "verification": agreement.as_dict() if agreement else None,
    })
    return TFLiteArtifact(mode=mode, path=path, card_path=card_path, size_bytes=len(model_bytes),
                          ops=ops, agreement=agreement)
