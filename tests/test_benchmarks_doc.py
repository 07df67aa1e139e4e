"""docs/benchmarks.md is what scripts/render_benchmarks.py renders from benchmarks/results/*.json,
and the renderer shows every result file (tables or not) with its command, date and machine.

Fix a failure of the first test with:  python scripts/render_benchmarks.py
"""
# bazel: suite=repo

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

# Under `bazel test` this file is a symlink into the source tree; resolving it checks the real
# tree's results and document (as tests/test_build_sync.py does).
ROOT = Path(os.path.realpath(__file__)).parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


render_benchmarks = _load("_render_benchmarks_under_test", ROOT / "scripts" / "render_benchmarks.py")
record = render_benchmarks.record


def test_the_committed_document_is_what_the_results_render():
    document = ROOT / "docs" / "benchmarks.md"
    assert document.is_file(), "docs/benchmarks.md is missing: run python scripts/render_benchmarks.py"
    rendered = render_benchmarks.render(str(ROOT / "benchmarks" / "results"))
    assert document.read_text(encoding="utf-8") == rendered, (
        "docs/benchmarks.md disagrees with benchmarks/results/*.json: run "
        "python scripts/render_benchmarks.py")


def test_every_result_file_has_a_section():
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert f"\n## {path.stem}\n" in text, f"{path.name} has no section in docs/benchmarks.md"


def _write(results_dir: Path, name: str, tables=(), **kwargs) -> dict:
    path = record.write_result(name, kwargs.pop("payload", {}), tables=tables,
                               path=str(results_dir / f"{name}.json"),
                               argv=[str(ROOT / "benchmarks" / f"{name}.py"), "--runs=3"], **kwargs)
    return json.loads(Path(path).read_text())


def test_a_result_with_tables_renders_its_tables_command_date_and_machine(tmp_path):
    table = record.Table(
        title="Latency | 64 px", columns=["model", "ms", "x reference", "kept"],
        rows=[["net_a", 1.23456, 0.5, True], ["net|b", 12.0, None, False]],
        formats=["", ".2f", ".2f", ""], notes="Median of 3\nruns.")
    written = _write(tmp_path, "synthetic", [table], summary="Net A is  twice as fast.",
                     about="What it measures.", payload={"raw": [1.0, float("nan")]})
    assert written["raw"] == [1.0, None]  # NaN is not JSON: written as null
    assert written["command"] == "python benchmarks/synthetic.py --runs=3"
    text = render_benchmarks.render(str(tmp_path))
    section = text[text.index("## synthetic"):]
    assert section.splitlines()[2] == "What it measures."
    assert "\nNet A is twice as fast.\n" in section
    assert "**Latency \\| 64 px**" in section
    assert "| model | ms | x reference | kept |\n|---|---:|---:|---|\n" in section
    assert "| net_a | 1.23 | 0.50 | yes |\n| net\\|b | 12.00 | - | no |\n" in section
    assert "\nMedian of 3 runs.\n" in section
    assert f"Run: `python benchmarks/synthetic.py --runs=3`, {written['date']}." in section
    machine = written["machine"]
    assert f"Machine: {machine['cpu_model']}; ISA " in section
    assert f"{machine['cpu_count']} cores" in section
    assert f"tensorflow {machine['versions']['tensorflow']}" in section
    assert "[synthetic](#synthetic)" in text


def test_two_files_of_one_benchmark_get_a_section_each(tmp_path):
    """A benchmark may write a second file (--output_json): each file is its own section,
    headed and linked by the file's name."""
    table = record.Table("T", ["x"], [[1.0]], formats=[".1f"])
    for name, summary in (("bench", "Default run."), ("bench_long", "Longer run.")):
        record.write_result("bench", {}, tables=[table], summary=summary, about="About.",
                            path=str(tmp_path / f"{name}.json"),
                            argv=[str(ROOT / "benchmarks" / "bench.py")])
    text = render_benchmarks.render(str(tmp_path))
    assert text.count("\n## bench\n") == 1 and text.count("\n## bench_long\n") == 1
    assert "[bench](#bench), [bench_long](#bench_long)" in text
    assert "Longer run." in text[text.index("## bench_long"):]
    assert "Longer run." not in text[text.index("## bench\n"):text.index("## bench_long")]


def test_a_file_without_tables_still_shows_its_figures(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({
        "task": {"image_size": 64, "feasible_range": [3, 9]}, "top1": 0.98765,
        "runs_detail": [{"top1": 1.0}, {"top1": 0.9}], "arch": ["x" * 50, "y" * 50],
        "beats_random": False, "macs": 6476544.0}))
    _write(tmp_path, "new", payload={"seconds": 12.5})
    text = render_benchmarks.render(str(tmp_path))
    assert text.index("## new") < text.index("## old")  # file-name order
    old = text[text.index("## old"):]
    assert "This file records no description; see `benchmarks/old.py`." in old
    for row in ("| `task.image_size` | 64 |", "| `task.feasible_range` | [3, 9] |",
                "| `top1` | 0.9877 |", "| `runs_detail` | (2 entries in the JSON) |",
                "| `arch` | (2 values in the JSON) |", "| `beats_random` | no |",
                "| `macs` | 6476544 |"):
        assert row in old
    assert "Run: command not recorded, date not recorded." in old
    assert "Machine: not recorded." in old
    new = text[text.index("## new"):text.index("## old")]
    assert "| `seconds` | 12.5 |" in new and "Machine: " in new


def test_check_mode_fails_on_a_stale_document_and_passes_once_rendered(tmp_path, capsys):
    results, output = tmp_path / "results", tmp_path / "benchmarks.md"
    _write(results, "one", [record.Table("t", ["a"], [[1]])])
    args = ["--results_dir", str(results), "--output", str(output)]
    assert render_benchmarks.main([*args, "--check"]) == 1  # no document yet
    assert render_benchmarks.main(args) == 0
    assert render_benchmarks.main([*args, "--check"]) == 0
    _write(results, "one", [record.Table("t", ["a"], [[2]])])  # a new run
    capsys.readouterr()
    assert render_benchmarks.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "+| 2 |" in err and "-| 1 |" in err and "run python scripts/render_benchmarks.py" in err


def test_a_malformed_result_file_is_named_with_the_problem(tmp_path, capsys):
    (tmp_path / "broken.json").write_text(json.dumps(
        {"tables": [{"title": "t", "columns": ["a", "b"], "rows": [[1]]}]}))
    assert render_benchmarks.main(["--results_dir", str(tmp_path),
                                   "--output", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.json" in err and "row 0 has 1 cells for 2 columns" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.md").exists()


def test_write_result_refuses_what_the_renderer_could_not_show(tmp_path):
    with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
        record.Table("t", ["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="2 formats for 1 columns"):
        record.Table("t", ["a"], [[1]], formats=[".2f", ""])
    with pytest.raises(ValueError, match="not a Python format spec"):
        record.Table("t", ["a"], [[1]], formats=["%.2f"])
    with pytest.raises(ValueError, match="holds a list"):
        record.Table("t", ["a"], [[[1, 2]]])
    with pytest.raises(ValueError, match=r"payload keys \['tables'\] are reserved"):
        record.write_result("x", {"tables": []}, path=str(tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()


def test_cells_are_formatted_by_their_column_spec():
    assert record.format_cell(6476544.0) == "6476544"
    assert record.format_cell(0.123456) == "0.1235"
    assert record.format_cell(3.0, ",d") == "3"
    assert record.format_cell(12345, ",d") == "12,345"
    assert record.format_cell(-0.0123, "+.2%") == "-1.23%"
    assert record.format_cell(None, ".2f") == "-"
    assert record.format_cell(float("inf"), ".2f") == "-"


def test_rewrite_view_replaces_tables_and_summary_and_keeps_the_measurement(tmp_path):
    path = str(tmp_path / "r.json")
    record.write_result("r", {"top1": 0.5}, tables=[record.Table("old", ["a"], [[1]])],
                        summary="old view", about="a", path=path, argv=["bench.py", "--n=1"])
    before = json.loads(Path(path).read_text())
    record.rewrite_view(path, [record.Table("new", ["a", "b"], [[1, 2.5]])], "new  view")
    after = json.loads(Path(path).read_text())
    assert after["tables"][0]["title"] == "new" and after["summary"] == "new view"
    assert {k: v for k, v in after.items() if k not in ("tables", "summary")} == {
        k: v for k, v in before.items() if k not in ("tables", "summary")}
    with pytest.raises(FileNotFoundError, match="no result file to rewrite"):
        record.rewrite_view(str(tmp_path / "missing.json"), [])
    assert not (tmp_path / "missing.json").exists()
