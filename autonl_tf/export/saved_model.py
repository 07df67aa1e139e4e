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
from autonl_tf.export.metadata import METADATA_MEAN, METADATA_STD, embed_classifier_metadata
from autonl_tf.export.modes import (
    LIGHTNL_PRODUCTS,
    MODE_DESCRIPTIONS,
    MODE_SELECTION,
    ExportError,
    check_lightnl_products,
    parse_tflite_modes,
)
from autonl_tf.export.products import check_int8_products
from autonl_tf.export.serving import (
    SERVING_BYTES,
    SERVING_IMAGES,
    SERVING_NORMALIZED,
    ClassifierServingModule,
)
from autonl_tf.export.tflite import (
    assert_builtin_ops_only,
    convert_to_tflite,
    xnnpack_partitions,
)
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
    # int8 only: how LightNL's products were computed ('int8' or 'float32'; None: no LightNL)
    lightnl_products: str | None = None


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
            if artifact.lightnl_products:
                check += f"; LightNL products in {artifact.lightnl_products}"
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


def _signature_card(module: ClassifierServingModule, image_size: int, crop_padding: int,
                    has_labels: bool) -> dict[str, Any]:
    """Per signature: inputs, outputs, and the client/model split of the preprocessing."""
    size = image_size
    bytes_outputs = {
        "classes": f"int32 [B, {module.top_k}] class ids, best first; -1 for an invalid image",
        "probabilities": f"float32 [B, {module.top_k}] softmax probabilities; 0 when invalid",
        "valid": "bool [B] False when the image could not be decoded (not JPEG/PNG, corrupt)",
    }
    if has_labels:
        bytes_outputs["class_names"] = f"string [B, {module.top_k}]; empty when invalid"
    logits = {"logits": "float32 [B, num_classes]"}
    return {
        SERVING_BYTES: {
            "inputs": {"image_bytes": "string [B] encoded JPEG or PNG, any size"},
            "outputs": bytes_outputs,
            **cards.contract(size, crop_padding, client_until="", input_tensor={
                "name": "image_bytes", "dtype": "string", "shape": ["B"]})},
        SERVING_IMAGES: {
            "inputs": {"images": f"uint8 [B, {size}, {size}, 3] RGB 0..255, already cropped "
                                 "and resized"},
            "outputs": logits,
            **cards.contract(size, crop_padding, client_until="resize",
                             client_extra=[{"op": "round_to_uint8"}], input_tensor={
                                 "name": "images", "dtype": "uint8",
                                 "shape": ["B", size, size, 3]})},
        SERVING_NORMALIZED: {
            "inputs": {"images": f"float32 [B, {size}, {size}, 3] already normalised"},
            "outputs": logits,
            **cards.contract(size, crop_padding, client_until="normalize", input_tensor={
                "name": "images", "dtype": "float32", "shape": ["B", size, size, 3]})},
    }


def _tflite_io_card(model_bytes: bytes, image_size: int, crop_padding: int) -> dict[str, Any]:
    """The .tflite's input and output tensors, and the client/model split of preprocessing."""
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
    model_input = describe(input_detail)
    # An int8 input takes the pixels quantised with the input tensor's parameters.
    extra = ([{"op": "quantize", **model_input["quantization"]}]
             if "quantization" in model_input else [])
    return {"input": model_input | {"values": "RGB pixels 0..255 (quantised when int8), "
                                              "cropped and resized, batch 1"},
            "output": describe(output_detail) | {"values": "logits (dequantise when int8)"},
            **cards.contract(image_size, crop_padding, client_until="resize",
                             client_extra=extra, input_tensor=model_input),
            # What MediaPipe / the Task Library read from the model (metadata.py): they apply
            # (pixel - mean) / std themselves, which with these values leaves the pixels as
            # the client steps above make them.
            "tflite_metadata": {"normalization": {"mean": [METADATA_MEAN],
                                                  "std": [METADATA_STD]},
                                "labels_file": LABELS_FILENAME}}


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
        "format": "autonl_tf export v2",
        **cards.export_metadata(),
        "model": dataclasses.asdict(info),
        "weights": dict(weights) if weights else None,
        "labels_file": LABELS_FILENAME if labels is not None else None,
        "top_k": module.top_k,
        "signatures": _signature_card(module, image_size, crop_padding, labels is not None),
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
                            "selection": MODE_SELECTION[a.mode],
                            **({"lightnl_products": a.lightnl_products}
                               if a.lightnl_products else {})} for a in artifacts},
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
    lightnl_products: str = "auto",
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
      lightnl_products: how the 'int8' model computes LightNL's products of two activations
        (`LIGHTNL_PRODUCT_CHOICES`): 'auto' in int8 inside XNNPACK, falling back to float32
        islands (the card says why) when their check (`check_int8_products`) or the top-1
        verification fails; 'int8' fails the export instead; 'float32' the islands.
      What was written and the measured agreements.

    Raises:
      ValueError: bad arguments (unknown TFLite mode, wrong label count, missing calibration).
      VerificationError: an agreement below ``min_top1_agreement``; nothing is published.
      ExportError: ``export_dir`` is a non-export directory, or writing failed.
    """
    modes = parse_tflite_modes(tflite_modes)
    check_lightnl_products(lightnl_products)
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
                                      int8_io, min_top1_agreement, mode_failures,
                                      lightnl_products)
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
                   failures, lightnl_products="auto") -> TFLiteArtifact:
    started = time.time()
    products_card = None
    if mode == "int8":
        model_bytes, agreement, products_card = _convert_int8(
            model, info.image_size, calibration_images, verification_images, reference, int8_io,
            min_top1_agreement, lightnl_products, failures)
    else:
        model_bytes = convert_to_tflite(model, info.image_size, mode)
        agreement = (compare_logits(reference, tflite_logits(model_bytes, verification_images))
                     if reference is not None else None)
    ops = tuple(assert_builtin_ops_only(model_bytes, what=f"TFLite model {mode!r}"))
    products_note = (f"; LightNL products in {products_card['computed_in']}"
                     if products_card and products_card["computed_in"] else "")
    model_bytes = embed_classifier_metadata(
        model_bytes, name=info.name,
        description=(f"{info.name} image classifier ({info.num_classes} classes, "
                     f"{info.image_size}x{info.image_size} RGB) exported by autonl_tf; TFLite "
                     f"mode {mode}: {MODE_DESCRIPTIONS[mode]}{products_note}"),
        labels=(list(labels) if labels is not None
                else [f"class_{i}" for i in range(info.num_classes)]))
    logging.info("TFLite %s: %d bytes, converted in %.1fs", mode, len(model_bytes),
                 time.time() - started)
    path = os.path.join(staging, tflite_filename(mode))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(model_bytes)
    if agreement is not None:
        _verify(f"tflite {mode}", agreement, min_top1_agreement, failures)
    card_path = os.path.splitext(path)[0] + ".json"
    quantization = {"mode": mode, "description": MODE_DESCRIPTIONS[mode],
                    "calibration_images": len(calibration_images) if mode == "int8" else None}
    if products_card is not None:
        quantization["lightnl_products"] = products_card
    cards.write_json(card_path, {
        "format": "autonl_tf tflite card v2",
        **cards.export_metadata(),
        "file": os.path.basename(path),
        "size_bytes": len(model_bytes),
        "selection": MODE_SELECTION[mode],
        "quantization": quantization,
        **_tflite_io_card(model_bytes, info.image_size, crop_padding),
        "batch_size": 1,
        "labels": list(labels) if labels is not None else None,
        "model": dataclasses.asdict(info),
        "ops": list(ops),
        "verification": agreement.as_dict() if agreement else None,
    })
    return TFLiteArtifact(mode=mode, path=path, card_path=card_path, size_bytes=len(model_bytes),
                          ops=ops, agreement=agreement,
                          lightnl_products=products_card["computed_in"] if products_card else None)


def _convert_int8(model, image_size, calibration_images, verification_images, reference,
                  int8_io, min_top1_agreement, choice, failures
                  ) -> tuple[bytes, Agreement | None, dict[str, Any]]:
    """The full-integer model with LightNL's products as ``choice`` asks
    (`LIGHTNL_PRODUCT_CHOICES`), its agreement with Keras, and its card's 'lightnl_products'.

    'auto' converts with int8 products, checks them (`check_int8_products`) and verifies the
    model; when either fails it converts again with the products in float32 and says why in
    the card. 'int8' fails the export (``failures``) instead; 'float32' goes there directly.
    """
    check_lightnl_products(choice)

    def convert(products: str) -> bytes:
        return convert_to_tflite(model, image_size, "int8", calibration_images, int8_io=int8_io,
                                 lightnl_products=products)

    def agreement_of(model_bytes: bytes) -> Agreement | None:
        if reference is None:
            return None
        return compare_logits(reference, tflite_logits(model_bytes, verification_images))

    def entry(computed_in: str | None, model_bytes: bytes, **fields) -> dict[str, Any]:
        return {"computed_in": computed_in, "requested": choice,
                "description": (LIGHTNL_PRODUCTS[computed_in] if computed_in
                                else "the network has no LightNL (no BATCH_MATMUL)"),
                "xnnpack_partitions": xnnpack_partitions(model_bytes).partitions, **fields}

    if choice == "float32":
        model_bytes = convert("float32")
        return model_bytes, agreement_of(model_bytes), entry(
            "float32", model_bytes, fallback_reason=None, int8_check=None)
    model_bytes = convert("int8")
    check = check_int8_products(model_bytes, verification_images if verification_images
                                is not None else calibration_images)
    agreement = agreement_of(model_bytes)
    if not check.products:
        return model_bytes, agreement, entry(None, model_bytes, fallback_reason=None,
                                             int8_check=None)
    reason = None
    if not check.ok:
        reason = f"the int8 products failed their check: {check.summary()}"
    elif (agreement is not None and min_top1_agreement is not None
          and agreement.top1_agreement < min_top1_agreement):
        reason = (f"with int8 products, {agreement.summary()} < required "
                  f"{min_top1_agreement:.2%}")
    if reason is None or choice == "int8":
        if reason is not None:
            failures.append(f"tflite int8: {reason}")
        return model_bytes, agreement, entry("int8", model_bytes, fallback_reason=None,
                                             int8_check=check.as_dict())
    logging.warning("TFLite int8: LightNL's products fall back to float32: %s", reason)
    model_bytes = convert("float32")
    return model_bytes, agreement_of(model_bytes), entry(
        "float32", model_bytes, fallback_reason=reason, int8_check=check.as_dict())
