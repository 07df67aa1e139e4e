"""The profiler CLI and its cross-check against TensorFlow's graph profiler."""
# bazel: suite=models

import json
import os
import pathlib
import subprocess
import sys

import pytest

from autonl_tf.models import build_model, resolve_model_spec
from autonl_tf.profile import profile_dict
from tests.support.graph_profile import analytic_macs_as_profiled, graph_profiler_macs

REPO = pathlib.Path(__file__).absolute().parent.parent


def run_profile(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "autonl_tf.profile", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, macs, params", [
    ("autonl_s", 267e6, 4.4e6), ("autonl_l", 353e6, 5.6e6), ("mobilenet_v2", 300e6, 3.5e6)])
def test_json_output_hits_published_figures(name, macs, params):
    result = run_profile(f"--model={name}", "--json")
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    assert isinstance(profile["macs"], int) and isinstance(profile["params"], int)
    assert abs(profile["macs"] - macs) / macs < 0.005
    assert abs(profile["params"] - params) / params < 0.01


def test_table_and_nonlocal_comparison():
    result = run_profile("--model=autonl_l", "--compare_nl")
    assert result.returncode == 0, result.stderr
    assert "total: 352.83M MACs" in result.stdout and "largest ratio:" in result.stdout
    profile = profile_dict(resolve_model_spec("autonl_l"), 224, 1000, 1.0, compare_nl=True)
    rows = profile["nonlocal_comparison"]
    assert len(rows) == 14
    assert all(r["conventional_nl_macs"] > r["lightnl_macs"] for r in rows)
    assert profile["max_cost_ratio"] == max(r["cost_ratio"] for r in rows) > 100


def test_arch_file_and_options(tmp_path):
    arch = tmp_path / "arch.txt"
    arch.write_text("r1_k3_s11_e1_i32_o16_sw\nr1_k5_s22_e6_i16_o24_sw_nonlocal0.25\n")
    result = run_profile(f"--arch_file={arch}", "--image_size=64", "--num_classes=10", "--json")
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    spec = resolve_model_spec(str(arch))
    assert profile["macs"] == spec.cost(64, 10).macs and len(profile["blocks"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--model=resnet50"], "unknown model"),
    (["--model=autonl_s", "--image_size=100"], "multiple of 32"),
    (["--model=r1_k3_s13_e1_i32_o16"], "bad token 's13'"),
    (["--arch_file=/nonexistent/arch.txt"], "cannot read architecture file"),
    ([], "exactly one of --model"),
])
def test_user_errors_are_one_line_without_traceback(args, message):
    result = run_profile(*args)
    assert result.returncode == 2  # bad input, as every program
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("autonl_tf.profile: error: ")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("arch", ["mobilenet_v2", "autonl_s"])
def test_cost_model_matches_tensorflow_graph_profiler(arch):
    spec = resolve_model_spec(arch)
    size, classes, width = 64, 10, 0.5
    model = build_model(spec, num_classes=classes, image_size=size, width_multiplier=width)
    measured = graph_profiler_macs(model, size)
    expected = analytic_macs_as_profiled(spec.cost(size, classes, width), measured)
    assert "Conv2D" in measured and "DepthwiseConv2dNative" in measured and "MatMul" in measured
    assert sum(measured.values()) == expected
