"""What every benchmark records beside its figures: the machine, the versions, the command.

Benchmarks print ratios against a reference measured in the same run and write their results
as JSON under ``benchmarks/results/`` with `write_result`; ``scripts/render_benchmarks.py``
renders ``docs/benchmarks.md`` from those files, with no code per benchmark. A result is only
comparable with another taken on the same CPU, so each file carries `machine()`: the CPU model,
the ISA extensions that decide which kernels run (AVX2/AVX-512, the VNNI int8 dot products, NEON
dot products on ARM), the core count, the load average, and the versions of Python, TensorFlow,
Keras, LiteRT and NumPy.

A result file is one JSON object::

    {
      "benchmark": "latency",                  # name; the file is results/<name>.json
      "command": "python benchmarks/latency.py --runs=10",
      "date": "2026-12-03T18:40:00Z",          # UTC, when the result was written
      "machine": {"cpu_model": ..., "isa_flags": [...], "cpu_count": 2,
                  "load_average": [1.0, 0.9, 0.8], "python": ..., "versions": {...}, ...},
      "about": "What the benchmark measures (one paragraph).",
      "summary": "What this run found, in a sentence or two (optional).",
      "tables": [                              # what docs/benchmarks.md shows, in order
        {"title": "Batch-1 latency, 224 px",
         "columns": ["model", "ms", "x MobileNetV2"],
         "rows": [["autonl_s", 12.3, 0.91], ...],     # numbers stay numbers
         "formats": ["", ".2f", ".2f"],                # per column, for numeric cells
         "notes": "Median of 50 runs; ratio to MobileNetV2 in the same run."}
      ],
      ...                                      # the payload: every raw figure, any layout
    }

The payload keeps every figure a later analysis may want (per-run times, settings); the
tables are the view a reader gets. A file without ``tables`` (written before this schema, or
by a benchmark that has none) still renders: the renderer shows its command, date, machine and
its scalar figures. Cells are str, int, float, bool or None (shown as "-"); a numeric cell is
formatted with its column's Python format spec (``".2f"``, ``".1%"``, ``",d"``, ``"+.2f"``;
empty: ints as they are, floats to 4 significant digits, or to the unit from 10,000 on), by
`format_cell`. Non-finite floats (NaN, Inf) are written as null: strict JSON has no spelling
for them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from autonl_tf import files

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonl_tf.latency.device import cpu_model_and_isa  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "numpy")

# Keys `write_result` owns at the top level of a result file; a payload may not use them.
RESERVED_KEYS = ("benchmark", "command", "date", "machine", "about", "summary", "tables")

Cell = str | int | float | bool | None


@dataclasses.dataclass(frozen=True)
class Table:
    """One table of a result, as docs/benchmarks.md shows it.

    Attributes:
      title: what the rows are (one line).
      columns: the column headings.
      rows: one sequence of ``len(columns)`` cells per row.
      formats: per column, a format spec for its numeric cells ("" = the default); empty
        means the default for every column.
      notes: a sentence or two under the table: the reference of a ratio, how it was measured.
    """

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    formats: Sequence[str] = ()
    notes: str = ""

    def __post_init__(self):
        where = f"table {self.title!r}"
        if not self.columns:
            raise ValueError(f"{where}: no columns")
        if self.formats and len(self.formats) != len(self.columns):
            raise ValueError(f"{where}: {len(self.formats)} formats for {len(self.columns)} "
                             "columns (give one per column, '' for the default)")
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"{where}: row {i} has {len(row)} cells for "
                                 f"{len(self.columns)} columns")
            for cell in row:
                if cell is not None and not isinstance(cell, (str, int, float)):
                    raise ValueError(f"{where}: row {i} holds a {type(cell).__name__} "
                                     f"({cell!r}); cells are str, int, float, bool or None")
        for spec, column in zip(self.formats or [""] * len(self.columns), self.columns,
                                strict=True):
            if spec:
                try:
                    format_cell(1, spec), format_cell(1.5, spec)
                except ValueError:
                    raise ValueError(f"{where}: column {column!r} has the format {spec!r}, "
                                     "not a Python format spec for numbers") from None

    def to_json(self) -> dict:
        return {"title": self.title, "columns": list(self.columns),
                "rows": [[_finite(cell) for cell in row] for row in self.rows],
                "formats": list(self.formats), "notes": self.notes}

    @classmethod
    def from_json(cls, value: Any) -> Table:
        """The table of a result file's ``tables`` entry; ValueError says what is wrong."""
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) \
                or not isinstance(value.get("rows"), list):
            raise ValueError("a table is an object with 'title', 'columns' (a list) and 'rows' "
                             "(a list of lists)")
        unknown = set(value) - {"title", "columns", "rows", "formats", "notes"}
        if unknown:
            raise ValueError(f"table {value.get('title')!r}: unknown keys {sorted(unknown)}")
        if not all(isinstance(row, list) for row in value["rows"]):
            raise ValueError(f"table {value.get('title')!r}: every row is a list of cells")
        return cls(title=str(value.get("title", "")), columns=[str(c) for c in value["columns"]],
                   rows=value["rows"], formats=value.get("formats") or (),
                   notes=str(value.get("notes") or ""))


def format_cell(value: Cell, spec: str = "") -> str:
    """A cell as the rendered table shows it (see the module docstring)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if spec:
        if isinstance(value, float) and spec[-1] in "bdoxX":
            value = round(value)  # an integer format ("d", ",d") of a float
        return format(value, spec)
    if isinstance(value, int):
        return str(value)
    # 4 significant digits, without the exponent .4g would give large numbers (MACs, seconds).
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _finite(value: Any) -> Any:
    """``value`` with every NaN/Inf float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """The machine and software a result was measured with (JSON-ready)."""
    model, isa = cpu_model_and_isa()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": model, "isa_flags": isa, "cpu_count": os.cpu_count(),
            "arch": platform.machine(), "system": platform.system(),
            "load_average": load, "python": platform.python_version(),
            "versions": {name: _version(name) for name in PACKAGES}}


def command_line(argv: list[str] | None = None) -> str:
    """The command that produced a result, as a user would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.relpath(os.path.abspath(argv[0]),
                             os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return shlex.join(["python", script, *argv[1:]])


def first_paragraph(docstring: str | None) -> str:
    """The first paragraph of a docstring, on one line ("" for None)."""
    paragraph = (docstring or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _benchmark_docstring() -> str:
    """The first paragraph of the running program's docstring when it is a script under
    benchmarks/ (else "": a test or another program says nothing about a benchmark)."""
    main = sys.modules.get("__main__")
    script = os.path.abspath(getattr(main, "__file__", None) or "")
    if os.path.dirname(script) != os.path.dirname(os.path.abspath(__file__)):
        return ""
    return first_paragraph(main.__doc__)


def rewrite_view(path: str, tables: Sequence[Table], summary: str | None = None) -> str:
    """Replaces the tables and the summary of the result file at `path`, after a change to how
    a benchmark presents its figures; the figures, command, date and machine stay as measured.
    Returns the path written (atomically)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no result file to rewrite; run the benchmark first or "
                                "pass the file's path")
    record = files.read_json(path)
    record["tables"] = [table.to_json() for table in tables]
    if summary:
        record["summary"] = " ".join(summary.split())
    return files.write_atomic(path, json.dumps(_finite(record), indent=2, allow_nan=False) + "\n")


def write_result(name: str, payload: dict | None = None, *, tables: Sequence[Table] = (),
                 summary: str | None = None, about: str | None = None,
                 path: str | None = None, argv: list[str] | None = None) -> str:
    """Writes a result file (layout: the module docstring), atomically.

    Args:
      name: the benchmark's name (the file is ``benchmarks/results/<name>.json`` by default).
      payload: the benchmark's raw figures (JSON-serialisable; no key of `RESERVED_KEYS`).
      tables: what docs/benchmarks.md shows of this result, in order.
      summary: what the run found, in a sentence or two.
      about: what the benchmark measures; default: the first paragraph of the docstring of
        the benchmark being run (``__main__``, a script under benchmarks/).
      path: another destination (e.g. a benchmark's ``--output_json``).
      argv: the command line (default ``sys.argv``).

    Returns:
      The path written.
    """
    payload = dict(payload or {})
    clashes = sorted(set(payload) & set(RESERVED_KEYS))
    if clashes:
        raise ValueError(f"{name}: payload keys {clashes} are reserved for write_result; "
                         "rename them")
    for table in tables:
        if not isinstance(table, Table):
            raise TypeError(f"{name}: tables holds a {type(table).__name__}; pass record.Table")
    if about is None:
        about = _benchmark_docstring()
    record = {"benchmark": name, "command": command_line(argv),
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine(), "about": about}
    if summary:
        record["summary"] = " ".join(summary.split())
    if tables:
        record["tables"] = [table.to_json() for table in tables]
    record.update(_finite(payload))
    path = path or os.path.join(RESULTS_DIR, f"{name}.json")
    return files.write_atomic(path, json.dumps(record, indent=2, allow_nan=False) + "\n")
