"""What every benchmark records beside its figures: the machine, the versions, the command.

Benchmarks print ratios against a reference measured in the same run and write their results
as JSON under ``benchmarks/results/`` with `write_result`; ``scripts/render_benchmarks.py``
renders ``docs/benchmarks.md`` from those files. A result is only comparable with another
taken on the same CPU, so each file carries `machine()`: the CPU model, the ISA extensions that
decide which kernels run (AVX2/AVX-512, the VNNI int8 dot products, NEON dot products on ARM),
the core count, the load average, and the versions of Python, TensorFlow, Keras, LiteRT and
NumPy.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from importlib import metadata

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autonl_tf.latency.device import cpu_model_and_isa  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "numpy")


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


def write_result(name: str, payload: dict, *, path: str | None = None,
                 argv: list[str] | None = None) -> str:
    """Writes ``payload`` plus the command, date and machine to a JSON file, atomically.

    Args:
      name: the benchmark's name (the file is ``benchmarks/results/<name>.json`` by default).
      payload: the benchmark's figures (JSON-serialisable).
      path: another destination (e.g. a benchmark's ``--output_json``).
      argv: the command line (default ``sys.argv``).

    Returns:
      The path written.
    """
    path = path or os.path.join(RESULTS_DIR, f"{name}.json")
    record = {"benchmark": name, "command": command_line(argv),
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": machine(), **payload}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(temporary, path)
    return path
