"""Exact evaluation (padding weighted out, any replica count), eval_results.json, loading a
trained model dir for inference (EMA / raw), and its errors."""
# bazel: suite=training

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from autonl_tf import data
from autonl_tf.recipe import recipe
from autonl_tf.runner import checkpoints, evaluation
from tests.support.strategies import two_cpu_replicas


@pytest.fixture(scope="module")
def data_dir(embedded_data_dir):
    return embedded_data_dir


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """The shared model dir (conftest.py: 8 steps in train_and_eval mode, checkpoints and
    evals at 4 and 8) and the training result; read-only."""
    model_dir, result = tiny_trained
    return str(model_dir), result


def _reference_metrics(model, data_cfg, batch_size):
    """Plain numpy over the non-distributed eval dataset, padding dropped by hand."""
    logits, labels = [], []
    for images, batch_labels, weights in data.build_eval_dataset(data_cfg, batch_size):
        keep = weights.numpy() > 0
        logits.append(model(images, training=False).numpy()[keep])
        labels.append(batch_labels.numpy()[keep])
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                keepdims=True)) - logits.max(1, keepdims=True)
    return {"top1": float(np.mean(top5[:, 0] == labels)),
            "top5": float(np.mean((top5 == labels[:, None]).any(1))),
            "loss": float(-np.mean(log_probs[np.arange(len(labels)), labels])),
            "num_images": len(labels)}


@pytest.mark.parametrize("replicas", [1, 2])
def test_exact_metrics_with_padding(trained, replicas):
    model_dir, result = trained
    strategy = two_cpu_replicas() if replicas == 2 else tf.distribute.get_strategy()
    with strategy.scope():
        model, config = recipe.load_model_for_inference(model_dir, strategy=strategy)
    batch_size = 24  # 64 images -> 3 batches of 24 with 8 padding images
    expected = _reference_metrics(model, config.data, batch_size)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: data.build_eval_dataset(config.data, batch_size, ctx))
    got = evaluation.evaluate_classifier(model, strategy, dataset)
    assert got["num_images"] == 64 == expected["num_images"]
    assert got["top1"] == pytest.approx(expected["top1"])
    assert got["top5"] == pytest.approx(expected["top5"])
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_train_and_eval_writes_results_and_config(trained):
    model_dir, result = trained
    records = evaluation.read_eval_results(model_dir)
    assert [r["step"] for r in records] == [4, 8]
    assert all(r["num_images"] == 64 and r["ema"] is True for r in records)
    assert result["eval"]["step"] == 8
    assert tf.io.gfile.glob(os.path.join(model_dir, "eval", "events.*"))
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = json.load(f)
    assert saved["model"]["arch"].split() == [
        "r1_k3_s11_e1_i32_o16_sw", "r1_k3_s22_e3_i16_o24_sw_nonlocal0.25"]
    assert saved["data"]["num_classes"] == 10 and saved["data"]["image_size"] == 32
    assert saved["model"]["width_multiplier"] == 0.25
    assert os.path.isdir(saved["data"]["data_dir"])
    assert saved["train"]["total_steps"] == 8


def test_ema_and_raw_weights(trained):
    model_dir, result = trained
    raw, raw_config = recipe.load_model_for_inference(model_dir, use_ema=False)
    ema, ema_config = recipe.load_model_for_inference(model_dir)
    assert (raw_config.restored.ema, ema_config.restored.ema) == (False, True)
    # The trained model's variables and their moving averages in memory when training ended.
    for r, e, t, a in zip(raw.trainable_variables, ema.trainable_variables, result["trainable"],
                          result["averages"], strict=True):
        np.testing.assert_array_equal(r.numpy(), t)
        np.testing.assert_array_equal(e.numpy(), a)
    assert any(not np.array_equal(r.numpy(), e.numpy())
               for r, e in zip(raw.trainable_variables, ema.trainable_variables, strict=True))
    earlier, config = recipe.load_model_for_inference(
        model_dir, checkpoint_path=os.path.join(model_dir, "ckpt-4"))
    assert config.restored.step == 4


def test_evaluate_checkpoints_once_and_continuous(trained, data_dir, tmp_path):
    model_dir = str(tmp_path / "model_dir")  # this test appends evaluations: a copy
    shutil.copytree(trained[0], model_dir)
    config = checkpoints.load_experiment_config(model_dir)
    dataset_fn = lambda ctx: data.build_eval_dataset(config.data, 16, ctx)  # noqa: E731
    strategy = tf.distribute.get_strategy()
    before = len(evaluation.read_eval_results(model_dir))
    restorer = recipe.ClassifierRestorer(config)
    records = evaluation.evaluate_checkpoints(model_dir, dataset_fn, strategy=strategy,
                                              restorer=restorer, use_ema=False)
    assert [(r["step"], r["ema"]) for r in records] == [(8, False)]
    # Continuous: step 8 with EMA already in eval_results.json -> skipped, then it stops at the
    # final training step without waiting for the timeout.
    records = evaluation.evaluate_checkpoints(model_dir, dataset_fn, strategy=strategy,
                                              restorer=restorer, continuous=True, timeout_s=30,
                                              stop_at_step=8)
    assert records == []
    assert len(evaluation.read_eval_results(model_dir)) == before + 1


def test_errors(trained, tmp_path):
    model_dir, _ = trained
    with pytest.raises(checkpoints.NoCheckpointError, match="config.json"):
        recipe.load_model_for_inference(str(tmp_path))
    config = checkpoints.load_experiment_config(model_dir)
    checkpoints.save_experiment_config(str(tmp_path), config)
    with pytest.raises(checkpoints.NoCheckpointError, match="no checkpoint"):
        recipe.load_model_for_inference(str(tmp_path))
    # A checkpoint of another network (different classes) under this config.
    other = str(tmp_path / "other")
    config.data.num_classes = 7
    checkpoints.save_experiment_config(other, config)
    with pytest.raises(checkpoints.CheckpointMismatchError, match="does not match"):
        recipe.load_model_for_inference(
            other, checkpoint_path=tf.train.latest_checkpoint(model_dir))
    with pytest.raises(checkpoints.CheckpointMismatchError, match="data.num_classes"):
        checkpoints.check_same_model(checkpoints.load_experiment_config(model_dir), config,
                                     model_dir)
