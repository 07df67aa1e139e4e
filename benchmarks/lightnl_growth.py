"""Where a trained LightNL network's numbers blow up: per-block magnitudes on eval images.

For a model dir written by train_main.py, runs the eval images through the network with
  * the EMA weights and the raw weights, and
  * BatchNorm in inference mode (moving statistics, what eval/export/serving use) and with the
    batch's own statistics (what training sees),
and prints, for every LightNL block, the largest |input| and |q k^T v / (H*W)| over the images,
the number of images whose logits are not finite, and the float16/bfloat16 limits that matter.
The aggregation is cubic in its input (|y| <= (H'W'/HW) * rC * max|x|^3), so a few-fold growth
of the block inputs becomes orders of magnitude at the output of the next block.

    python benchmarks/lightnl_growth.py --model_dir=/tmp/autonl_demo --num_images=600

It ends with the float16/bfloat16 check of every block's aggregation on the same inputs, as
lightnl.py computes it (1/(H*W) last) and with q scaled by 1/(H*W) first. The results go to
benchmarks/results/lightnl_growth.json (``--output_json``), rendered into docs/benchmarks.md by
scripts/render_benchmarks.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from autonl_tf import cost  # noqa: E402
from autonl_tf.layers import lightnl as lightnl_lib  # noqa: E402
from benchmarks import record  # noqa: E402

flags.DEFINE_string("model_dir", None, "Directory written by train_main.py.")
flags.DEFINE_integer("num_images", 600, "Eval images to run (from the start of the split).")
flags.DEFINE_integer("batch_size", 100, "Images per forward pass.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/lightnl_growth.json).")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS


def _measure(model, images: np.ndarray, batch_stats: bool, batch_size: int) -> dict:
    """{'blocks': [(name, max|x|, max|y|)], 'nonfinite': int, 'max_logit': float}."""
    records: dict[int, list] = {}  # id(layer) -> [path, max|x|, max|y|], in call order
    original = lightnl_lib.LightNL.call

    def recording_call(self, inputs, training=None):
        y = lightnl_lib.lightnl_aggregate(inputs, self.ratio, self.stride)
        entry = records.setdefault(id(self), [self.path, 0.0, 0.0, 0.0, tuple(inputs.shape)])
        entry[1] = max(entry[1], float(tf.reduce_max(tf.abs(inputs))))
        entry[2] = max(entry[2], float(tf.reduce_max(tf.abs(y))))
        # How far the BN's moving variance is from the variance of what it normalises here.
        batch_var = tf.math.reduce_variance(self.depthwise(y), axis=[0, 1, 2])
        ratio = tf.reduce_max(batch_var / (self.bn.moving_variance + self.bn.epsilon))
        entry[3] = max(entry[3], float(ratio))
        return original(self, inputs, training=training)

    lightnl_lib.LightNL.call = recording_call
    try:
        logits = np.concatenate([
            np.asarray(model(images[i:i + batch_size], training=batch_stats), np.float64)
            for i in range(0, len(images), batch_size)])
    finally:
        lightnl_lib.LightNL.call = original
    finite = np.isfinite(logits).all(-1)
    return {"blocks": [tuple(entry) for entry in records.values()],
            "nonfinite": int((~finite).sum()),
            "max_logit": float(np.abs(logits[finite]).max()) if finite.any() else float("nan")}


def _low_precision_overflows(model, images: np.ndarray, batch_size: int) -> list[list]:
    """Recomputes each block's aggregation of the inference-mode inputs in float16/bfloat16:
    as lightnl.py computes it (1/(H*W) applied last) and with q scaled by 1/(H*W) first (the
    same math in another order). Prints the images with Inf/NaN and the largest relative error;
    returns them as rows [block, dtype, order, scaling, images Inf/NaN, images, error]."""
    inputs: dict[str, list[np.ndarray]] = {}
    original = lightnl_lib.LightNL.call

    def recording_call(self, x, training=None):
        inputs.setdefault(self.path, []).append(np.asarray(x))
        return original(self, x, training=training)

    lightnl_lib.LightNL.call = recording_call
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size], training=False)
    finally:
        lightnl_lib.LightNL.call = original
    layers = {layer.path: layer for layer in model._flatten_layers()
              if isinstance(layer, lightnl_lib.LightNL)}

    def prescaled(x, ratio, stride, order):
        b, h, w, c = x.shape
        rc = cost.lightnl_channels(c, ratio)
        query = tf.reshape(x[..., :rc], [b, h * w, rc]) * tf.cast(1.0 / (h * w), x.dtype)
        sub = x[:, ::stride, ::stride, :]
        key, value = tf.reshape(sub[..., :rc], [b, -1, rc]), tf.reshape(sub, [b, -1, c])
        if order == "affinity_first":
            return tf.einsum("bnm,bmc->bnc", tf.einsum("bnc,bmc->bnm", query, key), value)
        return tf.einsum("bnc,bcd->bnd", query, tf.einsum("bmc,bmd->bcd", key, value))

    print("\nLightNL aggregation in low precision (inference-mode inputs, EMA weights):")
    rows = []
    for path, batches in inputs.items():
        x = np.concatenate(batches)
        layer = layers[path]
        for dtype in (tf.float16, tf.bfloat16):
            for order in ("affinity_first", "context_first"):
                reference = lightnl_lib.lightnl_aggregate(tf.constant(x), layer.ratio,
                                                          layer.stride, order).numpy()
                for name, fn in (("1/HW last", lightnl_lib.lightnl_aggregate),
                                 ("q/HW first", prescaled)):
                    y = np.asarray(tf.cast(fn(tf.constant(x, dtype), layer.ratio, layer.stride,
                                              order), tf.float32)).reshape(reference.shape)
                    bad = int((~np.isfinite(y)).reshape(len(x), -1).any(1).sum())
                    finite = np.isfinite(y)
                    error = (np.abs(y[finite] - reference[finite]).max()
                             / np.abs(reference).max()) if finite.any() else float("nan")
                    print(f"  {path:18s} {dtype.name:8s} {order:15s} {name:10s}: {bad:4d} of "
                          f"{len(x)} images Inf/NaN, max rel error {error:.2e}")
                    rows.append([path, dtype.name, order, name, bad, len(x), float(error)])
    return rows


def main(argv):
    del argv
    from autonl_tf.export.model_dir import eval_images
    from autonl_tf.recipe.recipe import load_model_for_inference

    _, config = load_model_for_inference(FLAGS.model_dir)
    from autonl_tf import data

    images = eval_images(data.prepare(config.data), FLAGS.num_images)
    print(f"{FLAGS.model_dir}: step {config.restored['step']}, {len(images)} eval images, "
          f"max |input image| {np.abs(images).max():.3g}")
    magnitudes, logits = [], []
    for use_ema in (True, False):
        model, _ = load_model_for_inference(FLAGS.model_dir, use_ema=use_ema)
        blocks = [layer for layer in model._flatten_layers()
                  if isinstance(layer, lightnl_lib.LightNL)]
        for batch_stats in (False, True):
            result = _measure(model, images, batch_stats, FLAGS.batch_size)
            mode = "batch statistics" if batch_stats else "moving statistics (inference)"
            weights = "EMA" if use_ema else "raw"
            print(f"\n{weights} weights, BN {mode}: "
                  f"{result['nonfinite']} of {len(images)} images with NaN/Inf logits, "
                  f"max finite |logit| {result['max_logit']:.3g}")
            logits.append([weights, mode, result["nonfinite"], len(images), result["max_logit"]])
            for name, x_max, y_max, var_ratio, shape in result["blocks"]:
                layer = next(b for b in blocks if b.path == name)
                h, w, c = shape[1], shape[2], shape[3]
                rc = cost.lightnl_channels(c, layer.ratio)
                keys = (-(-h // layer.stride)) * (-(-w // layer.stride))
                # |q k^T v / HW| can reach (keys/HW) rC max|x|^3: float16 (max 65504) can
                # overflow once max|x| exceeds this; the unscaled (q k^T) v, HW times larger,
                # already at HW^(1/3) times less.
                fp16 = (65504.0 * h * w / (keys * rc)) ** (1 / 3)
                bound = f"  [{h}x{w}x{c}, rC={rc}; fp16 bound |x|~{fp16:.3g}]"
                print(f"  {name:24s} max|x| {x_max:9.3g}  max|q k^T v/HW| {y_max:9.3g}  "
                      f"max batch var / BN moving var {var_ratio:9.3g}{bound}")
                magnitudes.append([weights, mode, name, f"{h}x{w}x{c}", rc, x_max, y_max,
                                   var_ratio, fp16])

    model, _ = load_model_for_inference(FLAGS.model_dir, use_ema=True)
    precision = _low_precision_overflows(model, images, FLAGS.batch_size)
    _write_result(config, len(images), logits, magnitudes, precision)


def _write_result(config, num_images: int, logits: list, magnitudes: list,
                  precision: list) -> None:
    tables = [
        record.Table(
            title="Logits on the eval images",
            columns=["weights", "BatchNorm", "images with NaN/Inf logits", "images",
                     "max finite |logit|"],
            rows=logits, formats=["", "", "", "", ".3g"],
            notes="BatchNorm with its moving statistics is what eval, export and serving use; "
                  "with the batch's own statistics, what training sees."),
        record.Table(
            title="Per LightNL block: largest magnitudes over the eval images",
            columns=["weights", "BatchNorm", "block", "input HxWxC", "rC", "max |x|",
                     "max |q k^T v / HW|", "max batch var / BN moving var",
                     "float16 bound on |x|"],
            rows=magnitudes, formats=["", "", "", "", "", ".3g", ".3g", ".3g", ".3g"],
            notes="|q k^T v / HW| can reach (keys/HW) rC max|x|^3: above the float16 bound on "
                  "|x| the aggregation can overflow float16 (max 65504)."),
        record.Table(
            title="LightNL aggregation in float16/bfloat16 (inference-mode inputs, EMA weights)",
            columns=["block", "dtype", "order", "scaling", "images Inf/NaN", "images",
                     "max relative error"],
            rows=precision, formats=["", "", "", "", "", "", ".2e"],
            notes="As lightnl.py computes it (1/HW applied last) and with q scaled by 1/HW "
                  "first; error relative to the float32 result's largest magnitude."),
    ]
    inference = [row for row in logits if row[1].startswith("moving")]
    bad = sum(row[2] for row in inference)
    overflows = sum(row[4] > 0 for row in precision if row[3] == "1/HW last"
                    and row[1] == "float16")
    summary = (f"Step {config.restored['step']}: {bad} NaN/Inf logits over {num_images} eval "
               f"images x {len(inference)} weight sets in inference mode; float16 overflows in "
               f"{overflows} block/order pairs as lightnl.py computes the aggregation.")
    path = record.write_result(
        "lightnl_growth", {"model_dir": FLAGS.model_dir, "step": int(config.restored["step"]),
                           "num_images": num_images, "batch_size": FLAGS.batch_size},
        tables=tables, summary=summary, path=FLAGS.output_json)
    print(f"wrote {path}")

if __name__ == "__main__":
    app.run(main)
