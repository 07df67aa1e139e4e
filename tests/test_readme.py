"""Every shell command of the README, exercised here at small size.

The README's ```bash blocks are read, continuation lines joined and comments dropped; each
command must have an entry in `COMMANDS`, the reviewed table below, which says how it is
exercised:

* ``run``: the command is run as written, in a scratch directory laid out like the README's
  (``photos/``, ``data/imagenet/``, ``cat.jpg``, symlinks to the binaries), with the absolute
  paths of the README (``/data/...``, ``/ckpt/...``, ``gs://BUCKET/...``) made relative to that
  directory and, where a full-size run would take hours, the listed substitutions (fewer steps,
  fewer shards). It must exit 0, and some outputs are checked against what the README says.
* ``refused``: the command needs what this machine lacks (a TPU, ImageNet, a prepared TFDS set);
  it is run as written (paths made relative) and must be refused the way the README documents:
  exit 2 and one error line naming the cause. This checks its flags and config keys parse.
* ``static``: the command cannot run inside a test (it runs this test suite, or needs Docker);
  a check of what it depends on stands in.

`test_every_readme_command_has_an_entry` fails when the README gains a command the table does
not cover (or the table keeps one the README dropped).
"""
# bazel: size=large timeout=long tags=subprocess suite=repo

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.support import programs

REPO_ROOT = pathlib.Path(os.path.abspath(__file__)).parents[1]
README = REPO_ROOT / "README.md"

RUN, REFUSED, STATIC = "run", "refused", "static"


def readme_commands(text: str) -> list[str]:
    """The commands of the ```bash / ```sh blocks, one string each, whitespace normalised."""
    commands = []
    for body in re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            line = re.sub(r"\s{2,}#.*$", "", line).strip()  # a trailing "   # comment"
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


@dataclasses.dataclass(frozen=True)
class Exercise:
    kind: str  # RUN, REFUSED or STATIC
    how: str  # for the reviewer: what is run, and why this way
    subs: tuple[tuple[str, str], ...] = ()  # replacements in the README text, in order
    expect: str = ""  # RUN: in the output; REFUSED: in the one error line
    needs: tuple[str, ...] = ()  # README commands whose outputs this one reads


DEMO_SEARCH = "python search_main.py --config=search:demo --model_dir=/tmp/search_demo"
# A search cut to 8 steps (4 of warm-up) has learned nothing: it goes on anyway instead of
# stopping with exit 4 (the learning check has its own tests, tests/test_search_learning.py).
SHORT_SEARCH = (" --train_steps=8 --config.eval.every_steps=4 --config.eval.steps=1 "
                "--config.search.bn_recalibration_steps=1 --config.search.stop_if_not_learning=false")
CPU_TRAIN = ("python train_main.py --config=demo --arch=/tmp/search_demo/arch.txt "
             "--config.model.width_multiplier=0.25 --model_dir=/tmp/searched_demo")
BUILD_TABLE = ("python -m autonl_tf.latency.build_table --config=search:demo --mode=int8 --threads=1 "
               "--output=my_table.json")
LATENCY_SEARCH = ("python search_main.py --config=search:demo --model_dir=/tmp/search_fast "
                  "--target_latency_ms=0.055 --latency_table=my_table.json")
DEMO_LATENCY = "bash scripts/demo.sh --target_latency_ms=0.055 --latency_mode=int8"
BUILD_TRAIN = ("python -m autonl_tf.data.build_tfrecords --input_dir=photos/train "
               "--output_dir=records --split=train --num_shards=2")
BUILD_VAL = ("python -m autonl_tf.data.build_tfrecords --input_dir=photos/val --output_dir=records "
             "--split=validation --num_shards=1")
TRAIN_PHOTOS = ("python train_main.py --config=demo --data_dir=records --model_dir=runs/photos "
                "--train_steps=600")
EXPORT = "python -m autonl_tf.export --model_dir=/ckpt/autonl_s --export_dir=/export/autonl_s"
WRITE_NPY = ("python -c 'import numpy as np; np.save(\"cat.npy\", "
             "np.array([open(\"cat.jpg\", \"rb\").read()]))'")
# The small trained model every eval/export command reads: /ckpt/autonl_s becomes the
# runs/photos that the README's own-folder commands train (4 steps instead of 600).
TRAINED = (BUILD_TRAIN, BUILD_VAL, TRAIN_PHOTOS)
ON_TRAINED = (("/ckpt/autonl_s", "runs/photos"),)
ADB_PUSH = "adb push model_int8.tflite /data/local/tmp/"
ADB_BENCHMARK = ("adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/model_int8.tflite "
                 "--num_threads=1 --use_xnnpack=true --enable_op_profiling=true")
NO_TPU = "--tpu=local: no TPU on this machine"
NO_DATA = "does not exist: no file matches"

COMMANDS: dict[str, Exercise] = {
    "bash scripts/demo.sh": Exercise(
        STATIC, "the whole demo (6 min) runs in CI (.ci/run, --smoke); here: bash -n, and the "
        "options the README lists are flags of `python -m autonl_tf.pipeline` (its --help)"),
    DEMO_LATENCY: Exercise(
        STATIC, "the demo again, searching for a latency: its options are pipeline flags (--help); "
        "the latency search itself is the search_main.py command below"),
    BUILD_TABLE: Exercise(
        RUN, "as written, timed in 1 round of 2 runs with 2 reference children (the table's "
        "values are not checked here, its format and use are)",
        subs=(("--output=my_table.json", "--output=my_table.json --rounds=1 --runs_per_round=2 "
               "--warmup_runs=1 --reference_children=2 --max_reference_error=10"),),
        expect="wrote my_table.json"),
    LATENCY_SEARCH: Exercise(
        RUN, "8 steps on the table built above; the summary sets the target against the "
        "table's prediction", subs=((LATENCY_SEARCH, LATENCY_SEARCH + SHORT_SEARCH),),
        needs=(BUILD_TABLE,), expect="supernet held-out top-1"),
    "bash scripts/test.sh": Exercise(
        STATIC, "runs this suite (recursion); here: bash -n, and it runs ruff and pytest"),
    "python -m autonl_tf.profile --model=autonl_l --compare_nl": Exercise(
        RUN, "as written; the README's LightNL total and NL/LightNL range are checked",
        expect="largest ratio"),
    "python -m autonl_tf.profile --model=autonl_s --json": Exercise(
        RUN, "as written; the README's AutoNL-S MACs and params are checked", expect='"macs"'),
    "python -m autonl_tf.profile --arch_file=runs/demo/search/arch.txt --image_size=32 "
    "--num_classes=10 --width_multiplier=0.25": Exercise(
        RUN, "runs/demo/search is the small demo search below; the total must equal the MACs "
        "in its search_summary.json", needs=(DEMO_SEARCH,), expect="total:"),
    "python -m autonl_tf.data.build_tfrecords --input_dir=/data/imagenet/train "
    "--output_dir=/data/imagenet-tfrecord --split=train --num_shards=1024 "
    "--synset_to_text=/data/imagenet/synset_words.txt": Exercise(
        RUN, "a 3-synset, 24-image stand-in for ImageNet's train folder, 2 shards",
        subs=(("--num_shards=1024", "--num_shards=2"),), expect="train: done"),
    "python -m autonl_tf.data.build_tfrecords --input_dir=/data/imagenet/val_by_class "
    "--output_dir=/data/imagenet-tfrecord --split=validation --num_shards=128 "
    "--synset_to_text=/data/imagenet/synset_words.txt": Exercise(
        RUN, "the 12-image validation stand-in, 1 shard",
        subs=(("--num_shards=128", "--num_shards=1"),), expect="validation: done"),
    "python train_main.py --config=autonl_s --config.data.dataset=tfds:imagenet2012 "
    "--data_dir=/data/tfds --model_dir=/ckpt/autonl_s_tfds": Exercise(
        REFUSED, "no prepared TFDS ImageNet here: an empty data dir must be refused as "
        "documented (the pipeline never downloads)", expect="is not prepared in"),
    BUILD_TRAIN: Exercise(RUN, "as written, 3 classes x 8 images", expect="train: done"),
    BUILD_VAL: Exercise(RUN, "as written, 3 classes x 4 images", expect="validation: done"),
    TRAIN_PHOTOS: Exercise(
        RUN, "4 steps instead of 600; the model the eval and export commands use",
        subs=(("--train_steps=600", "--train_steps=4"),), needs=(BUILD_TRAIN, BUILD_VAL),
        expect="trained to step 4"),
    "python eval_main.py --model_dir=runs/photos": Exercise(
        RUN, "as written", needs=TRAINED, expect="12 images, EMA weights"),
    "python -m autonl_tf.export --model_dir=runs/photos --export_dir=exports/photos "
    "--tflite=float32": Exercise(
        RUN, "as written", needs=TRAINED, expect="model_float32.tflite"),
    "python eval_main.py --model_dir=gs://BUCKET/searched_350m --tpu=local": Exercise(
        REFUSED, "no TPU here: refused as documented", expect=NO_TPU),
    "python search_main.py --config=search --target_flops=350e6 --data_dir=/data/imagenet-tfrecord "
    "--model_dir=/ckpt/search_350m": Exercise(
        REFUSED, "the ImageNet search on GPUs is no test; with a data dir holding no shards it must "
        "be refused, naming the data dir", subs=(("/data/imagenet-tfrecord", "/data/none"),),
        expect=NO_DATA),
    CPU_TRAIN: Exercise(
        RUN, "the searched network of the small demo search, 4 steps instead of 1875",
        subs=((CPU_TRAIN, CPU_TRAIN + " --train_steps=4"),), needs=(DEMO_SEARCH,),
        expect="trained to step 4"),
    "python eval_main.py --model_dir=/tmp/searched_demo": Exercise(
        RUN, "as written, on the network trained above", needs=(CPU_TRAIN,),
        expect="600 images, EMA weights"),
    "python train_main.py --config=autonl_l --tpu=my-v3-32 --tpu_zone=europe-west4-a "
    "--gcp_project=my-project --data_dir=gs://BUCKET/imagenet --model_dir=gs://BUCKET/autonl_l":
    Exercise(REFUSED, "the tpu extra is not installed here: refused as documented",
             expect="install the TPU extra"),
    "python train_main.py --config=autonl_s --data_dir=/data/imagenet-tfrecord "
    "--model_dir=/ckpt/autonl_s --train_batch_size=1024 --iterations_per_loop=100": Exercise(
        REFUSED, "AutoNL-S at batch 1024 is no test; with a data dir holding no shards it must "
        "be refused, naming the data dir", subs=(("/data/imagenet-tfrecord", "/data/none"),
                                                 ("/ckpt/autonl_s", "/ckpt/autonl_s_gpu")),
        expect=NO_DATA),
    "TF_CONFIG='{\"cluster\": {\"worker\": [\"host0:12345\", \"host1:12345\"]}, \"task\": "
    "{\"type\": \"worker\", \"index\": 0}}' python train_main.py --config=autonl_s "
    "--data_dir=/shared/imagenet --model_dir=/shared/autonl_s": Exercise(
        REFUSED, "one worker on localhost instead of two hosts, no ImageNet: refused, naming the "
        "data dir, after TF_CONFIG and the flags parsed",
        subs=(('"host0:12345", "host1:12345"', '"localhost:12345"'),), expect=NO_DATA),
    "python eval_main.py --model_dir=/ckpt/autonl_s": Exercise(
        RUN, "on the small trained model: the same run as the eval of runs/photos above",
        subs=ON_TRAINED, needs=TRAINED, expect="EMA weights"),
    "python eval_main.py --model_dir=/ckpt/autonl_s --continuous --eval_timeout=3600": Exercise(
        RUN, "on the small trained model; it is at its final step, so the evaluator ends at once",
        subs=ON_TRAINED, needs=TRAINED, expect="final training step"),
    "python eval_main.py --model_dir=/ckpt/autonl_s --use_ema=false --export_dir=/export/autonl_s":
    Exercise(RUN, "on the small trained model", subs=ON_TRAINED, needs=TRAINED,
             expect="raw weights"),
    "python search_main.py --config=search --target_flops=350e6 --tpu=local "
    "--data_dir=gs://BUCKET/imagenet --model_dir=gs://BUCKET/search_350m": Exercise(
        REFUSED, "no TPU here: refused as documented", expect=NO_TPU),
    "python train_main.py --config=autonl_s --arch=gs://BUCKET/search_350m/arch.txt --tpu=local "
    "--data_dir=gs://BUCKET/imagenet --model_dir=gs://BUCKET/searched_350m": Exercise(
        REFUSED, "--arch is the small demo search's arch.txt; no TPU here: refused as documented",
        subs=(("gs://BUCKET/search_350m/arch.txt", "/tmp/search_demo/arch.txt"),),
        needs=(DEMO_SEARCH,), expect=NO_TPU),
    DEMO_SEARCH: Exercise(
        RUN, "8 steps (4 of warm-up), one held-out batch, one BN recalibration batch; checks "
        "the files the README says it writes",
        subs=((DEMO_SEARCH, DEMO_SEARCH + SHORT_SEARCH),), expect="supernet held-out top-1"),
    EXPORT: Exercise(RUN, "on the small trained model, default modes", subs=ON_TRAINED,
                     needs=TRAINED, expect="model_float32.tflite"),
    WRITE_NPY: Exercise(RUN, "cat.jpg is one of the stand-in photos"),
    "saved_model_cli run --dir /export/autonl_s --tag_set serve --signature_def serving_default "
    "--inputs image_bytes=cat.npy": Exercise(
        RUN, "on the export above", needs=(EXPORT, WRITE_NPY),
        expect="Result for output key classes"),
    ADB_PUSH: Exercise(
        STATIC, "no phone here; the file pushed is the name the export gives its full-integer "
        "int8 model"),
    ADB_BENCHMARK: Exercise(
        STATIC, "no phone here; it times the file pushed above, on one thread with XNNPACK, as "
        "benchmarks/tflite_latency.py does on this machine"),
    "docker run -p 8501:8501 -v /export/autonl_s:/models/autonl_s/1 -e MODEL_NAME=autonl_s "
    "tensorflow/serving": Exercise(
        STATIC, "no Docker here; its mount source is the export command's --export_dir, which "
        "holds a SavedModel (saved_model.pb, variables/) with serving_default"),
}


def _readme_text() -> str:
    return README.read_text(encoding="utf-8")


README_COMMANDS = readme_commands(_readme_text())


def test_every_readme_command_has_an_entry():
    missing = [c for c in README_COMMANDS if c not in COMMANDS]
    stale = [c for c in COMMANDS if c not in README_COMMANDS]
    assert not missing, f"README commands without an entry in COMMANDS: {missing}"
    assert not stale, f"COMMANDS entries that are no longer in the README: {stale}"
    for command in COMMANDS.values():
        assert command.kind in (RUN, REFUSED, STATIC)
        assert all(need in COMMANDS and COMMANDS[need].kind == RUN for need in command.needs)


def test_readme_is_a_guide_not_a_notebook():
    """At most 300 lines, no dates (history is CHANGELOG.md's), figures from result files."""
    text = _readme_text()
    assert len(text.splitlines()) <= 300, "README.md is over 300 lines: move details to docs/"
    dated = [line for line in text.splitlines()
             if re.search(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]", line)]
    assert not dated, f"dated lines belong in CHANGELOG.md: {dated}"
    for block in ("results", "demo"):  # rendered by scripts/render_benchmarks.py
        assert len(re.findall(rf"^<!-- {block}:begin .*-->$", text, re.M)) == 1, block
        assert len(re.findall(rf"^<!-- {block}:end -->$", text, re.M)) == 1, block
    for link in re.findall(r"\]\(((?:docs/[\w.]+)|CHANGELOG\.md)(?:#[\w-]*)?\)", text):
        assert (REPO_ROOT / link).is_file(), f"the README links to {link}, which does not exist"


def test_extraction_joins_continuations_and_drops_comments():
    text = "```bash\n# a comment\nfoo --a=1 \\\n    --b=2   # why\n\nbar\n```\n```\nnot a command\n```\n"
    assert readme_commands(text) == ["foo --a=1 --b=2", "bar"]


# ---------------------------------------------------------------------------------------------
# The scratch directory and the runs.

_ABSOLUTE = re.compile(r"(?<=[=\s'\":])/(data|ckpt|export|shared|tmp)/")


def localise(command: str) -> str:
    """The README's absolute example paths, relative to the scratch directory."""
    return _ABSOLUTE.sub(r"\1/", command.replace("gs://BUCKET/", "gs/"))


def _image(path: pathlib.Path, rgb, rng) -> None:
    from PIL import Image

    pixels = np.clip(np.array(rgb) + rng.normal(0, 20, (48, 56, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> pathlib.Path:
    """A scratch directory laid out like the README's working directory."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("train_main.py", "eval_main.py", "search_main.py", "configs", "scripts"):
        (root / name).symlink_to(REPO_ROOT / name)
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    synsets = {"red": "n00000001", "green": "n00000002", "blue": "n00000003"}
    for split, folder, count in (("train", "train", 8), ("val", "val_by_class", 4)):
        for name, rgb in colours.items():
            for i in range(count):
                _image(root / "photos" / split / name / f"{i}.jpg", rgb, rng)
                _image(root / "data/imagenet" / folder / synsets[name] / f"{i}.JPEG", rgb, rng)
    (root / "data/imagenet/synset_words.txt").write_text(
        "".join(f"{s} {n} colour\n" for n, s in synsets.items()))
    (root / "data/tfds").mkdir()
    shutil.copy(root / "photos/val/red/0.jpg", root / "cat.jpg")
    (root / "runs/demo").mkdir(parents=True)
    (root / "runs/demo/search").symlink_to(root / "tmp/search_demo")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.pop("TF_CONFIG", None)
    return env


# (scratch directory, shell command) -> its run: two README commands that become the same
# shell command (the two evaluations of the small model) run once.
_RESULTS: dict[tuple[pathlib.Path, str], subprocess.CompletedProcess] = {}


def run_readme(command: str, work: pathlib.Path) -> tuple[str, subprocess.CompletedProcess]:
    """Runs a README command (once per scratch directory) after the commands it needs."""
    exercise = COMMANDS[command]
    for need in exercise.needs:
        shell, proc = run_readme(need, work)
        assert proc.returncode == 0, f"{shell} (needed) failed:\n{proc.stderr[-3000:]}"
    shell = command
    for old, new in exercise.subs:
        assert old in shell, f"substitution {old!r} does not apply to {command!r}"
        shell = shell.replace(old, new)
    shell = localise(shell)
    if (work, shell) not in _RESULTS:
        _RESULTS[work, shell] = _run_shell(shell, work)
    return shell, _RESULTS[work, shell]


def _python_argv(shell: str, env: dict[str, str]) -> list[str] | None:
    """``[sys.executable, *args]`` for a shell command that is one plain ``python args...``
    (quotes allowed; no expansions, redirections, pipes or variable prefixes) whose ``python``
    is this interpreter on the command's PATH; None otherwise."""
    if re.search(r"[|&;<>$`*?(){}\[\]~]", shell):
        return None
    words = shlex.split(shell)
    python = shutil.which(words[0], path=env["PATH"]) if words[0] == "python" else None
    if python is None or not os.path.samefile(python, sys.executable):
        return None
    return [sys.executable, *words[1:]]


def _run_shell(shell: str, work: pathlib.Path) -> subprocess.CompletedProcess:
    """Runs a README command as bash would. One plain ``python`` command runs through
    `programs.run`: the same argv, environment and directory, in a process of its own, but
    forked from a server that has TensorFlow imported (2.5-3 CPU-s less per command; set
    AUTONL_FRESH_PROCESSES=1 to run every command in a fresh interpreter)."""
    env = _env()
    argv = _python_argv(shell, env)
    if argv is None:
        return subprocess.run(["bash", "-c", shell], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
    return programs.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# What some outputs must say (the README's own statements).

# The README's model figures are rendered from benchmarks/results/model_profile.json
# (tests/test_benchmarks_doc.py: README == rendered JSON); the profiler must agree with it.
def _model_profile(name: str) -> dict:
    path = REPO_ROOT / "benchmarks" / "results" / "model_profile.json"
    return json.loads(path.read_text())["models"][name]


def _check_compare_nl(work, output):
    ratios = [float(r) for r in re.findall(r"\s([\d.]+)x$", output, re.M)]
    recorded = _model_profile("autonl_l")
    # The table prints one decimal.
    assert min(ratios) == pytest.approx(recorded["conventional_nl_ratio_min"], abs=0.051)
    assert max(ratios) == pytest.approx(recorded["conventional_nl_ratio_max"], abs=0.051)
    total = re.search(r"\(LightNL: ([\d.]+)M MACs", output).group(1)
    assert total == f"{recorded['lightnl_mmacs']:.2f}"


def _check_profile_json(work, output):
    profile = json.loads(re.search(r"^\{.*\}$", output, re.M).group(0))
    recorded = _model_profile("autonl_s")
    assert (profile["macs"], profile["params"]) == (recorded["macs"], recorded["params"]), (
        "the profiler disagrees with benchmarks/results/model_profile.json: run "
        "python benchmarks/model_profile.py && python scripts/render_benchmarks.py")


def _check_profile_arch(work, output):
    summary = json.loads((work / "tmp/search_demo/search_summary.json").read_text())
    assert f"total: {summary['macs'] / 1e6:.2f}M MACs" in output


def _check_search(work, output):
    written = {p.name for p in (work / "tmp/search_demo").iterdir()}
    assert {"arch.txt", "search_summary.json", "search_history.json", "search.png"} <= written
    summary = json.loads((work / "tmp/search_demo/search_summary.json").read_text())
    for key in ("supernet_train_top1", "supernet_heldout_top1",
                "supernet_heldout_top1_after_warmup"):
        assert key in summary


def _check_latency_search(work, output):
    summary = json.loads((work / "tmp/search_fast/search_summary.json").read_text())
    latency = summary["latency"]
    assert latency["target_ms"] == 0.055 and latency["predicted_ms"] > 0
    assert latency["table"].endswith("my_table.json")


def _check_shards(prefix):
    def check(work, output):
        out = work / "data/imagenet-tfrecord"
        assert list(out.glob(f"{prefix}-*-of-*"))
        assert "n00000001" in (out / "labels.txt").read_text()
    return check


CHECKS = {
    "python -m autonl_tf.profile --model=autonl_l --compare_nl": _check_compare_nl,
    "python -m autonl_tf.profile --model=autonl_s --json": _check_profile_json,
    "python -m autonl_tf.profile --arch_file=runs/demo/search/arch.txt --image_size=32 "
    "--num_classes=10 --width_multiplier=0.25": _check_profile_arch,
    DEMO_SEARCH: _check_search,
    LATENCY_SEARCH: _check_latency_search,
    "python -m autonl_tf.data.build_tfrecords --input_dir=/data/imagenet/train "
    "--output_dir=/data/imagenet-tfrecord --split=train --num_shards=1024 "
    "--synset_to_text=/data/imagenet/synset_words.txt": _check_shards("train"),
    "python -m autonl_tf.data.build_tfrecords --input_dir=/data/imagenet/val_by_class "
    "--output_dir=/data/imagenet-tfrecord --split=validation --num_shards=128 "
    "--synset_to_text=/data/imagenet/synset_words.txt": _check_shards("validation"),
}


def test_checks_name_table_commands():
    assert set(CHECKS) <= set(COMMANDS)


# ---------------------------------------------------------------------------------------------
# The runs.

_RUNNABLE = [c for c in README_COMMANDS if c in COMMANDS and COMMANDS[c].kind != STATIC]


@pytest.mark.slow
@pytest.mark.parametrize("command", _RUNNABLE, ids=[c[:70] for c in _RUNNABLE])
def test_readme_command(command, work):
    exercise = COMMANDS[command]
    shell, proc = run_readme(command, work)
    output = proc.stdout + proc.stderr
    if exercise.kind == RUN:
        assert proc.returncode == 0, f"{shell}\nexit {proc.returncode}:\n{output[-3000:]}"
        assert exercise.expect in output, f"{shell}: no {exercise.expect!r} in\n{output[-3000:]}"
    else:
        errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
        assert proc.returncode == 2, f"{shell}\nexit {proc.returncode}:\n{output[-3000:]}"
        assert len(errors) == 1 and exercise.expect in errors[0], f"{shell}:\n{output[-3000:]}"
    if command in CHECKS:
        CHECKS[command](work, output)


def test_scripts_parse():
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        subprocess.run(["bash", "-n", str(REPO_ROOT / script)], check=True)
    test_sh = (REPO_ROOT / "scripts/test.sh").read_text()
    assert "ruff check" in test_sh and "pytest" in test_sh
    assert "autonl_tf.pipeline" in (REPO_ROOT / "scripts/demo.sh").read_text()


@pytest.mark.slow
def test_demo_options_are_pipeline_flags():
    """The options the README gives `scripts/demo.sh` are flags of the pipeline it runs."""
    options = re.search(r"Options: (.*?)\.\n", _readme_text(), re.S).group(1)
    names = re.findall(r"`--(\w+)", options)
    assert {"workdir", "target_flops", "seed", "smoke"} <= set(names)
    for command in README_COMMANDS:
        if command.startswith("bash scripts/demo.sh "):
            names += re.findall(r"--(\w+)", command)
    proc = subprocess.run([sys.executable, "-m", "autonl_tf.pipeline", "--help"],
                          cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # --help is no error (README exit codes)
    for name in names:
        assert re.search(rf"^\s+--(\[no\])?{name}:", proc.stdout, re.M), (name, proc.stdout[-3000:])


def test_the_phone_commands_push_and_time_the_int8_export():
    from autonl_tf.export.saved_model import tflite_filename

    pushed = ADB_PUSH.split()[2]
    assert pushed == tflite_filename("int8")
    assert f"--graph=/data/local/tmp/{pushed}" in ADB_BENCHMARK and "--num_threads=1" in ADB_BENCHMARK


@pytest.mark.slow
def test_docker_serves_the_export(work):
    docker = next(c for c in README_COMMANDS if c.startswith("docker run"))
    source = re.search(r"-v (\S+):/models/", docker).group(1)
    assert f"--export_dir={source}" in EXPORT
    shell, proc = run_readme(EXPORT, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = work / localise(" " + source).strip()
    assert (exported / "saved_model.pb").is_file() and (exported / "variables").is_dir()
    shell, proc = run_readme(
        "saved_model_cli run --dir /export/autonl_s --tag_set serve --signature_def "
        "serving_default --inputs image_bytes=cat.npy", work)
    assert proc.returncode == 0 and "Result for output key valid" in proc.stdout
