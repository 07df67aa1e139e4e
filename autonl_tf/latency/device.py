"""What a latency was measured on: the CPU model and the ISA extensions that pick the kernels.

A latency table is only valid on the device it was measured on; its ``device`` string is
`this_device()` when the package measured it with LiteRT on this machine (benchmarks/record.py
records the same description beside every benchmark result).
"""

from __future__ import annotations

import os
import platform

__all__ = ["ISA_FLAGS", "cpu_model_and_isa", "this_device"]

# ISA extensions that change which CPU kernels XNNPACK / oneDNN / Eigen pick (x86 and ARM names
# as /proc/cpuinfo spells them).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "avxvnni", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm",
             "sve", "sve2", "bf16")


def cpu_model_and_isa() -> tuple[str, list[str]]:
    """(CPU model name, its ISA flags among `ISA_FLAGS`), from /proc/cpuinfo where it exists."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, [flag for flag in ISA_FLAGS if flag in flags]


def this_device() -> str:
    """This machine in one line, e.g. 'AMD EPYC (x86_64, 2 CPUs, avx avx2 fma f16c)'."""
    model, isa = cpu_model_and_isa()
    return (f"{model} ({platform.machine()}, {os.cpu_count()} CPUs"
            + (f", {' '.join(isa)}" if isa else "") + ")")
