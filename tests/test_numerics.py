"""A network that diverges on some inputs is detected, never served or evaluated as numbers.

The diverging network is real: the demo LightNL network with its LightNL BN gammas at 1 (as in
a trained model) and its stem convolution scaled by 300. LightNL's aggregation q k^T v is cubic
in its input, so a noisy image overflows float32 after three stacked blocks, while an image at
the normalisation mean (zero input) stays finite.
"""
# bazel: suite=export

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import data
from autonl_tf.data import writer
from autonl_tf.layers.lightnl import LightNL
from autonl_tf.models.builder import build_model
from tests.support.demo_model import demo_images, demo_spec, encode_images

MEAN_RGB = np.array([124, 116, 104], np.uint8)  # ~ImageNet mean: normalises to ~0


@pytest.fixture(scope="module")
def diverging_model():
    keras.utils.set_random_seed(0)
    model = build_model(demo_spec(), num_classes=10, image_size=32)
    for layer in model._flatten_layers():
        if isinstance(layer, LightNL):
            layer.bn.gamma.assign(tf.ones_like(layer.bn.gamma))
    stem = model.get_layer("stem_conv")
    stem.kernel.assign(stem.kernel * 300.0)
    return model


@pytest.fixture(scope="module")
def two_images():
    """uint8 [2, 32, 32, 3]: a noisy image (diverges), a flat mean-colour image (finite)."""
    noisy, _ = demo_images(1, 32)
    flat = np.zeros((1, 32, 32, 3), np.uint8) + MEAN_RGB
    return np.concatenate([noisy, flat])


def test_the_model_really_diverges_on_one_image(diverging_model, two_images):
    logits = diverging_model(np.asarray(data.normalize(two_images)), training=False).numpy()
    assert not np.isfinite(logits[0]).all() and np.isfinite(logits[1]).all()


def test_served_image_gets_finite_probabilities_or_valid_false(diverging_model, two_images):
    from autonl_tf.export.serving import ClassifierServingModule

    module = ClassifierServingModule(diverging_model, 32, crop_padding=0)
    out = {k: v.numpy() for k, v in module.serve_bytes(
        tf.constant(encode_images(two_images, "PNG"))).items()}
    assert out["valid"].tolist() == [False, True]
    assert np.isfinite(out["probabilities"]).all()
    assert out["classes"][0].tolist() == [-1] * 5 and (out["classes"][1] >= 0).all()


def test_evaluation_counts_nonfinite_rows_and_writes_strict_json(diverging_model, two_images,
                                                                 tmp_path):
    from autonl_tf.runner import evaluation

    images = np.asarray(data.normalize(two_images))
    dataset = tf.data.Dataset.from_tensors((images, tf.constant([3, 3]), tf.constant([1.0, 1.0])))
    metrics = evaluation.evaluate_classifier(diverging_model, tf.distribute.get_strategy(),
                                             dataset)
    assert metrics["num_nonfinite"] == 1 and metrics["num_images"] == 2
    assert math.isfinite(metrics["loss"]) and metrics["top1"] <= 0.5
    evaluation.append_eval_result(str(tmp_path), {"step": 1, **metrics,
                                                  "loss_of_all": float("nan")})

    def reject(constant):
        raise ValueError(constant)

    (record,) = json.loads((tmp_path / "eval_results.json").read_text(), parse_constant=reject)
    assert record["loss_of_all"] is None and record["num_nonfinite"] == 1


def test_export_refuses_a_model_with_nonfinite_outputs(diverging_model, two_images, tmp_path):
    from autonl_tf.export.model_dir import check_finite_on_eval_split
    from autonl_tf.export.saved_model import VerificationError

    out = str(tmp_path / "shards")
    items = [writer.ImageItem(encoded, 1, "c", "c", f"{i}.png")
             for i, encoded in enumerate(encode_images(np.concatenate([two_images[1:]] * 5 + [
                 two_images[:1]]), "PNG"))]
    writer.write_shards(items, out, "validation", 1)
    cfg = data.default_data_config()
    cfg.update({"data_dir": out, "image_size": 32, "num_classes": 10, "eval_crop_padding": 0,
                "num_eval_examples": 0})
    with pytest.raises(VerificationError, match=r"NaN/Inf logits on 1 of the 6 eval images "
                                                r"\(first: eval image 5\)"):
        check_finite_on_eval_split(diverging_model, cfg)


@pytest.mark.slow
def test_nan_guard_covers_the_ema_weights(embedded_data_dir, tmp_path):
    from autonl_tf.recipe import recipe
    from autonl_tf.runner import driver
    from tests.support import training as testing

    config = recipe.resolve_experiment(testing.tiny_config(embedded_data_dir))
    model = recipe.build_classifier(config, "float32")
    recipe.compile_classifier(model, config, jit_compile=False)

    class PoisonEma(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            from autonl_tf.runner.checkpoints import moving_average_variables

            average = moving_average_variables(self.model)[0]
            average.assign(tf.fill(average.shape, float("nan")))

    images = np.asarray(data.normalize(demo_images(8, 32)[0]))
    labels = np.arange(8) % 10

    def dataset_fn(_):
        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    with pytest.raises(driver.TrainingDivergedError, match="EMA weights"):
        driver.fit(model, dataset_fn, strategy=tf.distribute.get_strategy(),
                   model_dir=str(tmp_path / "m"), total_steps=2, checkpoint_every_steps=2,
                   extra_callbacks=[PoisonEma()])
    assert not tf.train.latest_checkpoint(str(tmp_path / "m"))
