"""The demo pipeline's acceptance checks (the full pipeline itself runs in CI, .ci/run)."""
# bazel: suite=repo

import json

from autonl_tf import pipeline


def write_run(workdir, macs, top1, supernet=(0.25, 0.4)):
    (workdir / "search").mkdir(parents=True)
    (workdir / "train").mkdir()
    (workdir / "search" / "search_summary.json").write_text(json.dumps({
        "macs": macs, "supernet_heldout_top1_after_warmup": supernet[0],
        "supernet_heldout_top1": supernet[1], "num_classes": 10, "warmup_steps": 1000,
        "heldout_images": 600}))
    (workdir / "train" / "eval_results.json").write_text(
        json.dumps([{"step": 1, "top1": 0.05}, {"step": 2, "top1": top1}]))


def test_requirements_hold(tmp_path):
    write_run(tmp_path, macs=1_020_000, top1=0.8)
    assert pipeline.check_requirements(str(tmp_path), 1e6, within=0.05, min_top1=0.3) == []
    assert pipeline.check_requirements(str(tmp_path), 1e6, within=None, min_top1=None) == []


def test_requirements_fail_with_reasons(tmp_path):
    write_run(tmp_path, macs=1_200_000, top1=0.2)
    failures = pipeline.check_requirements(str(tmp_path), 1e6, within=0.05, min_top1=0.3)
    assert len(failures) == 2
    assert "not within 5% of the target 1000000" in failures[0]
    assert "top-1 0.200 is below the required 0.300" in failures[1]


def test_supernet_requirement_and_summary_line(tmp_path):
    write_run(tmp_path, macs=1_000_000, top1=0.8, supernet=(0.15, 0.4))
    failures = pipeline.check_requirements(str(tmp_path), 1e6, None, None, min_supernet_top1=0.2)
    assert failures == ["supernet held-out top-1 at the end of the warm-up is 0.15 (required "
                        "0.200)"]
    summary = json.loads((tmp_path / "search" / "search_summary.json").read_text())
    line = pipeline.supernet_learning_line(summary)
    assert line == ("supernet held-out top-1 (600 eval images): 15.0% after the warm-up "
                    "(step 1000), 40.0% at the end of the search (chance 10.0%)")


def test_retraining_uses_the_demo_recipe_at_the_search_width():
    setting = pipeline.SearchSetting(32, 0.25, (1, 2))
    command = pipeline.retrain_command("python", "w/search", "w/train", setting, seed=3)
    assert command[:4] == ["python", "-m", "autonl_tf.train_main", "--config=demo"]
    assert {"--arch=w/search/arch.txt", "--config.model.width_multiplier=0.25",
            "--config.data.image_size=32", "--config.train.seed=3"} <= set(command)
    assert not any(arg.startswith("--train_steps") for arg in command)
    assert "--train_steps=10" in pipeline.retrain_command("python", "s", "t", setting, 10)


def test_latency_requirement_uses_the_measured_latency_and_the_summary_lines(tmp_path):
    write_run(tmp_path, macs=1_000_000, top1=0.8)
    path = tmp_path / "search" / "search_summary.json"
    summary = json.loads(path.read_text())
    summary["latency"] = {"target_ms": 0.05, "predicted_ms": 0.0505, "measured_ms": 0.056,
                          "measured": "LiteRT int8 on this machine", "mode": "int8",
                          "threads": 1, "table": "t.json", "device": "cpu"}
    path.write_text(json.dumps(summary))
    failures = pipeline.check_requirements(str(tmp_path), None, within=0.1, min_top1=None)
    assert failures == ["searched child's measured latency 0.0560 ms is not within 10% of the "
                        "target 0.0500 ms"]
    assert pipeline.check_requirements(str(tmp_path), None, within=0.15, min_top1=None) == []
    lines = pipeline.latency_lines(summary, {"int8": 0.049})
    assert "predicted by the table        0.0505 ms (+1.0%)" in lines[1]
    assert "searched child, measured      0.0560 ms (+12.0%)" in lines[2]
    assert "exported TFLite int8          0.0490 ms (-2.0%)" in lines[3]
    # A phone's table: nothing measured here, the prediction is checked.
    summary["latency"].update(measured_ms=None, measured="not measured: a phone")
    path.write_text(json.dumps(summary))
    assert pipeline.check_requirements(str(tmp_path), None, within=0.05, min_top1=None) == []
