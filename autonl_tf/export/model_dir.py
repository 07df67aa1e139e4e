"""Export of a training directory: load the (EMA) weights, read the run config, export.

The run config (``<model_dir>/config.json``, returned by
`autonl_tf.recipe.recipe.load_model_for_inference`) gives the image size, classes, arch,
width multiplier and data section; the data section gives the class names and the eval images
used to calibrate the full-integer TFLite model and to verify every exported model.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from autonl_tf import files
from autonl_tf.export.modes import ExportError, parse_tflite_modes
from autonl_tf.export.saved_model import ExportResult, export_saved_model

__all__ = ["eval_images", "export_from_model_dir", "export_trained_model", "read_labels"]


def _get(config: Any, dotted: str, default: Any = None) -> Any:
    """config['a']['b'] for 'a.b' on a ConfigDict or nested dicts; default when missing."""
    value = config
    for key in dotted.split("."):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif not isinstance(value, Mapping) and hasattr(value, key):
            value = getattr(value, key)
        else:
            return default
    return value


def _merged(defaults: dict, values: Mapping) -> dict:
    merged = dict(defaults)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _data_config(config: Any, data_dir: str | None):
    """The run's data section as a ConfigDict (data_dir overridden when given)."""
    import ml_collections

    from autonl_tf.data import default_data_config

    section = _get(config, "data")
    if section is None:
        raise ExportError("the run config has no 'data' section")
    values = section.to_dict() if hasattr(section, "to_dict") else copy.deepcopy(dict(section))
    # Missing keys (older configs) take the defaults; JSON lists stay lists (no type clash).
    data_cfg = ml_collections.ConfigDict(_merged(default_data_config().to_dict(), values))
    if data_dir:
        data_cfg.data_dir = data_dir
    return data_cfg


def read_labels(labels_file: str) -> list[str]:
    """A labels file with one class name per line (the export's own labels.txt format)."""
    if not tf.io.gfile.exists(labels_file):
        raise ExportError(f"labels file {labels_file!r} does not exist")
    with tf.io.gfile.GFile(labels_file) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _labels_from_data(data_cfg) -> list[str] | None:
    from autonl_tf.data import DataError, class_names

    try:
        return class_names(data_cfg)
    except (DataError, OSError, tf.errors.OpError) as e:
        logging.warning("no class names (%s): the export's serving_default returns class ids "
                        "and probabilities only", e)
        return None


def eval_images(data_cfg, count: int, skip: int = 0, batch_size: int = 50) -> np.ndarray:
    """float32 [n <= count, S, S, 3]: eval images ``skip .. skip+count`` of the eval split,
    preprocessed exactly as in evaluation (normalised). Fewer when the split is smaller."""
    from autonl_tf.data import build_eval_dataset

    if count <= 0:
        return np.zeros([0, data_cfg.image_size, data_cfg.image_size, 3], np.float32)
    wanted = skip + count
    collected: list[np.ndarray] = []
    have = 0
    for images, _, weights in build_eval_dataset(data_cfg, min(batch_size, wanted)):
        real = tf.cast(images, tf.float32).numpy()[weights.numpy() > 0]
        collected.append(real)
        have += len(real)
        if have >= wanted:
            break
    if not collected:
        return np.zeros([0, data_cfg.image_size, data_cfg.image_size, 3], np.float32)
    return np.concatenate(collected)[skip:wanted]


def check_finite_on_eval_split(model: keras.Model, data_cfg, batch_size: int = 64) -> int:
    """Runs the model on every eval image; refuses it when any gives NaN/Inf logits.

    A network whose LightNL blocks diverge on a few inputs must not be exported as if it
    worked (README, Numerics). Returns the number of images checked.

    Raises:
      VerificationError: naming how many images (and the first one) give non-finite logits.
    """
    from autonl_tf.data import build_eval_dataset
    from autonl_tf.export.saved_model import VerificationError
    from autonl_tf.export.verify import count_nonfinite_rows

    total = bad = 0
    first = None
    for images, _, weights in build_eval_dataset(data_cfg, batch_size):
        real = weights.numpy() > 0
        logits = np.asarray(model(images, training=False), np.float32)[real]
        rows = count_nonfinite_rows(logits)
        if rows and first is None:
            first = total + int(np.argmax(~np.isfinite(logits).all(-1)))
        total += int(real.sum())
        bad += rows
    if bad:
        raise VerificationError(
            f"the model gives NaN/Inf logits on {bad} of the {total} eval images (first: eval "
            f"image {first}); nothing exported. Its numbers diverge on some inputs: see "
            "docs/cli.md, 'When the math diverges' (eval_main.py reports num_nonfinite)")
    return total


def export_trained_model(
    model: keras.Model,
    config: Any,
    export_dir: str,
    *,
    tflite_modes: str | Sequence[str] = (),
    top_k: int = 5,
    labels_file: str | None = None,
    data_dir: str | None = None,
    num_calibration_images: int = 200,
    num_verify_images: int = 100,
    min_top1_agreement: float | None = 0.9,
    int8_io: bool = False,
    optional_tflite_modes: Sequence[str] = (),
    lightnl_products: str = "auto",
) -> ExportResult:
    """Exports a model already in memory, described by its run config (as in config.json).

    Args:
      model: the network with the weights to export (the EMA weights, for a trained run).
      config: the run config (ConfigDict or nested dicts): model.arch, model.width_multiplier,
        data.image_size, data.num_classes, data.* of the input pipeline.
      export_dir: see `export_saved_model`.
      tflite_modes: 'float32,float16,dynamic_int8,int8' or a subset (list or comma string).
      top_k: classes returned by serving_default.
      labels_file: one class name per line; default: the class names of the data config
        (labels.txt of the TFRecords, TFDS names); none found -> no class_names output.
      data_dir: overrides data.data_dir (labels, calibration and verification images).
      num_calibration_images: eval images after the verification ones, to calibrate 'int8'.
      num_verify_images: first eval images, to compare every exported model with Keras;
        0 skips verification.
      min_top1_agreement: fail (nothing published) below this top-1 agreement; None: report.
      int8_io: int8 input/output for the 'int8' TFLite model.
      optional_tflite_modes, lightnl_products: see `export_saved_model`.
    """
    modes = parse_tflite_modes(tflite_modes)
    image_size = int(_get(config, "data.image_size", model.input_shape[1]))
    data_cfg = _data_config(config, data_dir)
    labels = read_labels(labels_file) if labels_file else _labels_from_data(data_cfg)

    need_calibration = "int8" in modes and num_calibration_images > 0
    verification = calibration = None
    if num_verify_images > 0 or need_calibration:
        from autonl_tf.data import DataError, diagnose

        try:
            with diagnose.explain_input_errors():  # a damaged record: named in one line
                images = eval_images(data_cfg, num_verify_images + (
                    num_calibration_images if need_calibration else 0))
                if num_verify_images > 0:
                    check_finite_on_eval_split(model, data_cfg)
        except (DataError, ExportError):
            raise
        except Exception as e:
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ExportError(
                f"cannot read eval images for verification/calibration from data_dir "
                f"{data_cfg.data_dir!r} (dataset {data_cfg.dataset!r}): {first_line}. Pass "
                "--data_dir, or --num_verify_images=0 (and no 'int8' mode) to export without "
                "them") from e
        verification = images[:num_verify_images] if num_verify_images > 0 else None
        calibration = images[num_verify_images:] if need_calibration else None
        if verification is not None and not len(verification):
            raise ExportError(f"the eval split of {data_cfg.data_dir!r} has no images")
        if need_calibration and not len(calibration):
            # Small eval splits: calibrate on the verification images rather than not at all.
            logging.warning("eval split too small for separate calibration images; "
                            "calibrating on the verification images")
            calibration = verification
    if "int8" in modes and calibration is None:
        raise ExportError("the 'int8' TFLite mode needs calibration images: "
                          "set --num_calibration_images > 0")

    return export_saved_model(
        model, export_dir, image_size=image_size, labels=labels, top_k=top_k,
        crop_padding=int(_get(config, "data.eval_crop_padding", 32)),
        tflite_modes=modes, calibration_images=calibration, verification_images=verification,
        min_top1_agreement=min_top1_agreement, int8_io=int8_io,
        optional_tflite_modes=optional_tflite_modes, lightnl_products=lightnl_products,
        model_spec=_get(config, "model.arch"),
        width_multiplier=float(_get(config, "model.width_multiplier", 1.0)),
        weights=_restored_weights(config))


def _restored_weights(config: Any) -> dict | None:
    """{'checkpoint', 'step', 'ema'} of a config from `load_model_for_inference`."""
    restored = _get(config, "restored")
    if not restored:
        return None
    restored = dict(restored)
    return {"checkpoint": os.path.basename(str(restored["checkpoint"])),
            "step": int(restored["step"]), "ema": bool(restored["ema"])}


def _has_files(directory: str) -> bool:
    return tf.io.gfile.isdir(directory) and bool(tf.io.gfile.listdir(directory))


def export_from_model_dir(
    model_dir: str,
    export_dir: str,
    *,
    use_ema: bool = True,
    checkpoint_path: str | None = None,
    **options: Any,
) -> ExportResult:
    """Loads a training directory's weights (EMA by default) and exports them.

    Args:
      model_dir: the directory train_main.py wrote (config.json + checkpoints).
      export_dir: see `export_saved_model`.
      use_ema: export the exponential moving average of the weights (what eval reports).
      checkpoint_path: a specific checkpoint; default the latest in model_dir.
      **options: as `export_trained_model` (tflite_modes, top_k, labels_file, data_dir,
        num_calibration_images, num_verify_images, min_top1_agreement, int8_io,
        lightnl_products).
    """
    parse_tflite_modes(options.get("tflite_modes", ()))  # fail on a bad mode before loading
    if not _has_files(model_dir):
        raise ExportError(
            f"model_dir {model_dir!r} does not exist or is empty: nothing to export. Point "
            "--model_dir at a directory written by train_main.py (config.json + checkpoints)")
    if not tf.io.gfile.exists(os.path.join(model_dir, files.CONFIG_FILE)):
        raise ExportError(f"model_dir {model_dir!r} has no config.json: it was not written by "
                          "train_main.py (or training never started)")
    from autonl_tf.recipe.recipe import load_model_for_inference

    model, config = load_model_for_inference(model_dir, checkpoint_path=checkpoint_path,
                                             use_ema=use_ema)
    return export_trained_model(model, config, export_dir, **options)


def export_after_run(model_dir: str, export_dir: str | None, *, use_ema: bool,
                     strategy: tf.distribute.Strategy) -> ExportResult | None:
    """``--export_dir`` of train_main.py / eval_main.py: the chief exports the latest checkpoint
    (EMA weights unless ``use_ema`` is False) once the run is done; other workers do nothing."""
    from autonl_tf.runner.strategy import is_chief

    if not export_dir or not is_chief(strategy):
        return None
    logging.info("Exporting %s to %s", model_dir, export_dir)
    return export_from_model_dir(model_dir, export_dir, use_ema=use_ema)
