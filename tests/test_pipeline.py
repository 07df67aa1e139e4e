"""The demo pipeline's acceptance checks (the full pipeline itself runs in CI, .ci/run)."""

import json

from autonl_tf import pipeline


def write_run(workdir, macs, top1):
    (workdir / "search").mkdir(parents=True)
    (workdir / "train").mkdir()
    (workdir / "search" / "search_summary.json").write_text(json.dumps({"macs": macs}))
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
