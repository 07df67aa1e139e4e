r"""Training throughput of AutoNL-S/L next to keras.applications MobileNetV2 and EfficientNetB0.

Every model is trained by the same driver (`autonl_tf.runner.driver.fit`) with the same recipe
pieces (TF1 RMSProp + warm-up/decay schedule, label-smoothed loss, L2 on kernels, weight EMA),
batch and image size, on a synthetic in-memory batch (so the input pipeline costs nothing). Each
model runs in its own subprocess so that its memory is measured in isolation: peak GPU memory
(`tf.config.experimental.get_memory_info`) on GPU, peak RSS growth over the process's state before
the model was built on CPU.

    python benchmarks/train_throughput.py                       # 2 CPU cores: ~3-5 minutes
    python benchmarks/train_throughput.py --image_size=224 --batch_size=256 --steps=100 \
        --warmup_steps=20 --use_bfloat16                        # a GPU
    python benchmarks/train_throughput.py --tpu=local --image_size=224 --batch_size=1024 \
        --steps=200 --warmup_steps=50 --use_bfloat16            # a TPU VM

Images/s are printed as ratios to MobileNetV2 (keras.applications). The results go to
benchmarks/results/train_throughput.json (``--output_json``), rendered into docs/benchmarks.md
by scripts/render_benchmarks.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from absl import app, flags  # noqa: E402

from benchmarks import record  # noqa: E402

MODELS = {
    "autonl_s": "AutoNL-S",
    "autonl_l": "AutoNL-L",
    "keras_mobilenet_v2": "MobileNetV2 (keras.applications)",
    "keras_efficientnet_b0": "EfficientNetB0 (keras.applications)",
    "mobilenet_v2": "MobileNetV2 (autonl_tf builder)",
}
BASELINE = "keras_mobilenet_v2"

flags.DEFINE_list("models", ["autonl_s", "autonl_l", "keras_mobilenet_v2",
                             "keras_efficientnet_b0"],
                  f"Models to benchmark, among {', '.join(MODELS)}.")
flags.DEFINE_integer("image_size", 128, "Square input size, px (a multiple of 32).")
flags.DEFINE_integer("batch_size", 16, "Global training batch.")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (tracing, XLA compilation).")
flags.DEFINE_integer("steps", 20, "Timed training steps after the warm-up.")
flags.DEFINE_integer("steps_per_loop", 1, "Steps per host call (iterations_per_loop).")
flags.DEFINE_bool("use_bfloat16", False, "mixed_bfloat16 (TPU/GPU).")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "XLA: auto = on TPU/GPU, off on CPU.")
flags.DEFINE_string("tpu", None, "TPU name or 'local' (TPU VM).")
flags.DEFINE_integer("num_gpus", None, "Use at most this many GPUs (default all).")
flags.DEFINE_integer("timeout", 900, "Seconds allowed per model.")
flags.DEFINE_string("output_json", None, "Where the results go (default "
                    "benchmarks/results/train_throughput.json).")
flags.DEFINE_string("worker_model", None, "Internal: benchmark one model in this process.")
flags.DEFINE_string("result_file", None, "Internal: where the worker writes its JSON result.")

FLAGS = flags.FLAGS


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _build(name: str, image_size: int, num_classes: int):
    import keras

    from autonl_tf.models import build_model, resolve_model_spec

    shape = (image_size, image_size, 3)
    if name == "keras_mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=shape,
                                              classes=num_classes, classifier_activation=None)
    if name == "keras_efficientnet_b0":
        return keras.applications.EfficientNetB0(weights=None, input_shape=shape,
                                                 classes=num_classes,
                                                 classifier_activation=None)
    return build_model(resolve_model_spec(name), num_classes=num_classes, image_size=image_size)


def _benchmark_one(name: str) -> dict:
    """Trains ``name`` for warmup + steps steps with the recipe; images/s over the timed steps."""
    import keras
    import ml_collections
    import numpy as np
    import tensorflow as tf

    from autonl_tf.recipe import recipe
    from autonl_tf.runner import driver
    from autonl_tf.runner import strategy as strategy_lib
    from autonl_tf.runner.config import load_config

    strategy = strategy_lib.create_strategy(tpu=FLAGS.tpu, num_gpus=FLAGS.num_gpus)
    strategy_lib.per_replica_batch_size(FLAGS.batch_size, strategy)
    jit = strategy_lib.resolve_jit_compile(FLAGS.jit_compile, strategy)
    total = FLAGS.warmup_steps + FLAGS.steps
    # The recipe of autonl_tf/recipe/defaults.py with this benchmark's batch and length.
    config = ml_collections.ConfigDict(load_config("autonl_s").to_dict())
    config.train.batch_size = FLAGS.batch_size
    config.train.steps_per_epoch = max(1, total)
    config.train.total_steps = total
    config.train.learning_rate = config.train.lr_per_256 * FLAGS.batch_size / 256
    config.data.num_classes = FLAGS.num_classes
    per_replica = FLAGS.batch_size // strategy.num_replicas_in_sync
    rng = np.random.default_rng(0)
    images = rng.normal(size=(per_replica, FLAGS.image_size, FLAGS.image_size, 3)).astype(
        np.float32)
    labels = rng.integers(0, FLAGS.num_classes, size=(per_replica,)).astype(np.int32)

    rss_before = _peak_rss_mib()
    policy = "mixed_bfloat16" if FLAGS.use_bfloat16 else "float32"
    with strategy.scope():
        with recipe.dtype_policy_scope(policy):
            model = _build(name, FLAGS.image_size, FLAGS.num_classes)
        recipe.compile_classifier(model, config, jit_compile=jit)

    class Clock(keras.callbacks.Callback):
        """Wall time at the end of each chunk (before any checkpoint is written)."""

        def __init__(self):
            super().__init__()
            self.marks = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append((batch, time.perf_counter()))

    clock = Clock()
    with tempfile.TemporaryDirectory() as model_dir:
        result = driver.fit(
            model, lambda ctx: tf.data.Dataset.from_tensors((images, labels)).repeat(),
            strategy=strategy, model_dir=model_dir, total_steps=total,
            steps_per_loop=FLAGS.steps_per_loop, checkpoint_every_steps=0,
            log_every_steps=0, global_batch_size=FLAGS.batch_size,
            extra_callbacks=[clock], checkpoint_input_pipeline=False, handle_sigterm=False)
    timed = [(step, t) for step, t in clock.marks if step >= FLAGS.warmup_steps]
    (start_step, start), (end_step, end) = timed[0], timed[-1]
    steps = end_step - start_step
    if steps <= 0:
        raise ValueError("no timed steps: raise --steps or lower --steps_per_loop")
    memory = {}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        memory["peak_gpu_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    memory["peak_rss_growth_mib"] = _peak_rss_mib() - rss_before
    return {
        "model": name,
        "params": int(model.count_params()),
        "images_per_second": steps * FLAGS.batch_size / (end - start),
        "step_ms": 1000.0 * (end - start) / steps,
        "final_loss": result["train_logs"].get("loss"),
        "device": strategy_lib.strategy_kind(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "xla": jit,
        **memory,
    }


def _run_worker(name: str) -> dict:
    """Runs this script on one model in a fresh process; returns its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_file = f.name
    passthrough = [f"--{n}={getattr(FLAGS, n)}" for n in (
        "image_size", "batch_size", "num_classes", "warmup_steps", "steps", "steps_per_loop",
        "jit_compile")]
    passthrough.append("--use_bfloat16" if FLAGS.use_bfloat16 else "--nouse_bfloat16")
    if FLAGS.tpu:
        passthrough.append(f"--tpu={FLAGS.tpu}")
    if FLAGS.num_gpus is not None:
        passthrough.append(f"--num_gpus={FLAGS.num_gpus}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.abspath(__file__), f"--worker_model={name}",
               f"--result_file={result_file}", *passthrough]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=FLAGS.timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: worker failed:\n{proc.stderr[-3000:]}")
        with open(result_file) as f:
            return json.load(f)
    finally:
        os.unlink(result_file)


def _memory_column(results: list[dict]) -> tuple[str, str]:
    """(result key, column title) of the memory figure: GPU peak where measured, else RSS."""
    if any("peak_gpu_mib" in r for r in results):
        return "peak_gpu_mib", "peak GPU MiB"
    return "peak_rss_growth_mib", "peak RSS +MiB"


def _ratio(result: dict, results: list[dict]) -> float | None:
    baseline = next((r for r in results if r["model"] == BASELINE), None)
    return result["images_per_second"] / baseline["images_per_second"] if baseline else None


def _table(results: list[dict]) -> str:
    memory_key, memory_title = _memory_column(results)
    header = (f"{'model':<38} {'params':>9} {'img/s':>9} {'vs MNv2':>8} {'ms/step':>9} "
              f"{memory_title:>14}")
    lines = [header, "-" * len(header)]
    for r in results:
        ratio = _ratio(r, results)
        lines.append(
            f"{MODELS[r['model']]:<38} {r['params'] / 1e6:>8.2f}M {r['images_per_second']:>9.1f} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>8} {r['step_ms']:>9.1f} "
            f"{r.get(memory_key, float('nan')):>14.0f}")
    return "\n".join(lines)


def _write_result(results: list[dict], setting: str) -> str:
    """benchmarks/results/train_throughput.json: the table above and every worker's figures."""
    memory_key, memory_title = _memory_column(results)
    ratios = {r["model"]: _ratio(r, results) for r in results}
    table = record.Table(
        title=f"Training throughput: {setting}",
        columns=["model", "params (M)", "images/s", "x MobileNetV2", "ms/step", memory_title],
        rows=[[MODELS[r["model"]], r["params"] / 1e6, r["images_per_second"],
               ratios[r["model"]], r["step_ms"], r.get(memory_key)] for r in results],
        formats=["", ".2f", ".1f", ".2f", ".1f", ".0f"],
        notes=f"Images/s over {FLAGS.steps} timed steps after {FLAGS.warmup_steps} untimed ones, "
              "each model in its own process, trained by autonl_tf.runner.driver.fit on one "
              "synthetic in-memory batch; ratio to MobileNetV2 (keras.applications) of the "
              "same run.")
    found = [f"{MODELS[name]} {ratio:.2f}x" for name, ratio in ratios.items()
             if ratio is not None and name != BASELINE]
    summary = ("Training images/s relative to MobileNetV2 (keras.applications): "
               + ", ".join(found) + "." if found else None)
    settings = {name: getattr(FLAGS, name) for name in (
        "models", "image_size", "batch_size", "num_classes", "warmup_steps", "steps",
        "steps_per_loop", "use_bfloat16", "jit_compile", "tpu", "num_gpus")}
    return record.write_result("train_throughput", {"settings": settings, "results": results},
                               tables=[table], summary=summary, path=FLAGS.output_json)


def main(argv):
    del argv
    if FLAGS.worker_model:
        result = _benchmark_one(FLAGS.worker_model)
        with open(FLAGS.result_file, "w") as f:
            json.dump(result, f)
        return
    unknown = [m for m in FLAGS.models if m not in MODELS]
    if unknown:
        raise app.UsageError(f"unknown models {unknown}; choose among {', '.join(MODELS)}")
    results = []
    for name in FLAGS.models:
        start = time.time()
        results.append(_run_worker(name))
        print(f"{MODELS[name]}: {results[-1]['images_per_second']:.1f} img/s "
              f"({time.time() - start:.0f} s)", flush=True)
    first = results[0]
    setting = (f"{FLAGS.image_size}x{FLAGS.image_size} px, global batch {FLAGS.batch_size}, "
               f"{'mixed_bfloat16' if FLAGS.use_bfloat16 else 'float32'}, XLA "
               f"{'on' if first['xla'] else 'off'}, {first['device']} x{first['replicas']}")
    print(f"\nTraining throughput: {FLAGS.image_size}x{FLAGS.image_size} px, global batch "
          f"{FLAGS.batch_size}, {FLAGS.steps} timed steps after {FLAGS.warmup_steps} warm-up, "
          f"{'mixed_bfloat16' if FLAGS.use_bfloat16 else 'float32'}, XLA "
          f"{'on' if first['xla'] else 'off'}, {first['device']} x{first['replicas']}; "
          f"recipe: TF1 RMSProp, label smoothing, L2, EMA\n")
    print(_table(results))
    print(f"wrote {_write_result(results, setting)}")


if __name__ == "__main__":
    app.run(main)
