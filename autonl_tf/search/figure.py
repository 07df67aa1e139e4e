"""The search figure (matplotlib, Agg backend): cost vs step, and the searched network.

Top: expected MACs of the supernet's current child at every recorded step, against the target
(with a +-5% band) and the feasible range; the weights-only warm-up is shaded. Under a latency
target: the latency table's prediction instead, against the target (+-10% band), with the
child's measured latency when search_main.py has timed it.
Middle: how well the supernet learns: training top-1 (of the sampled children during the
warm-up, of the current child after it) and held-out top-1 of the current child, against chance.
Bottom: the child block by block: box width ~ kernel size, box height ~ expansion, colour =
stage; a dashed empty box is a skipped block; a diamond above a block is a LightNL (label
ratio/stride, filled for stride 1, hollow for stride 2); 'SE' marks squeeze-and-excitation.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: files only

from matplotlib import patches  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

__all__ = ["render_search_figure"]

_STAGE_COLOURS = ("#9e9e9e", "#4e79a7", "#59a14f", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2",
                  "#edc948", "#ff9da7", "#9c755f")


def _plot_cost(ax, summary: Mapping, history: Sequence[Mapping], warmup_steps: int,
               total_steps: int | None) -> None:
    target = summary.get("target_macs")
    low, high = summary["feasible_range"]
    steps = [row["step"] for row in history]
    macs = [row["expected_macs"] / 1e6 for row in history]
    if steps:
        ax.step(steps, macs, where="post", color="#1f77b4", lw=1.6, label="expected MACs")
    ax.plot([summary["step"]], [summary["macs"] / 1e6], "o", color="#1f77b4", ms=7,
            label=f"final child {summary['macs'] / 1e6:.3f}M")
    if target:
        ax.axhline(target / 1e6, color="#d62728", ls="--", lw=1.2,
                   label=f"target {target / 1e6:.3f}M")
        ax.axhspan(0.95 * target / 1e6, 1.05 * target / 1e6, color="#d62728", alpha=0.08,
                   label="target +-5%")
    ax.axhline(high / 1e6, color="#7f7f7f", ls=":", lw=1)
    ax.axhline(low / 1e6, color="#7f7f7f", ls=":", lw=1, label="feasible range")
    if warmup_steps > 0:
        ax.axvspan(0, warmup_steps, color="#bbbbbb", alpha=0.3, label="warm-up (weights only)")
    right = max([total_steps or 0, summary["step"], *steps, 1])
    ax.set_xlim(0, right)
    ax.set_xlabel("step")
    ax.set_ylabel("MACs (millions)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    ax.grid(alpha=0.3)


def _plot_latency(ax, summary: Mapping, history: Sequence[Mapping], warmup_steps: int,
                  total_steps: int | None) -> None:
    latency = summary["latency"]
    target = latency.get("target_ms")
    low, high = latency["feasible_range_ms"]
    rows = [row for row in history if "expected_latency_ms" in row]
    steps = [row["step"] for row in rows]
    if rows:
        ax.step(steps, [row["expected_latency_ms"] for row in rows], where="post",
                color="#1f77b4", lw=1.6, label="predicted latency (table)")
    ax.plot([summary["step"]], [latency["predicted_ms"]], "o", color="#1f77b4", ms=7,
            label=f"final child, predicted {latency['predicted_ms']:.4f} ms")
    if latency.get("measured_ms") is not None:
        ax.plot([summary["step"]], [latency["measured_ms"]], "D", color="#2ca02c", ms=7,
                label=f"final child, measured {latency['measured_ms']:.4f} ms")
    if target:
        ax.axhline(target, color="#d62728", ls="--", lw=1.2, label=f"target {target:.4f} ms")
        ax.axhspan(0.9 * target, 1.1 * target, color="#d62728", alpha=0.08,
                   label="target +-10%")
    ax.axhline(high, color="#7f7f7f", ls=":", lw=1)
    ax.axhline(low, color="#7f7f7f", ls=":", lw=1, label="feasible range")
    if warmup_steps > 0:
        ax.axvspan(0, warmup_steps, color="#bbbbbb", alpha=0.3, label="warm-up (weights only)")
    ax.set_xlim(0, max([total_steps or 0, summary["step"], *steps, 1]))
    ax.set_xlabel("step")
    ax.set_ylabel(f"latency (ms), {latency['mode']}, {latency['threads']} thread(s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    ax.grid(alpha=0.3)


def _plot_network(ax, summary: Mapping) -> None:
    blocks = summary["blocks"]
    max_expand = max(max(b["choices"]["expand_ratios"]) for b in blocks)
    max_kernel = max(max(b["choices"]["kernel_sizes"]) for b in blocks)
    previous_stage = None
    for x, block in enumerate(blocks):
        colour = _STAGE_COLOURS[block["stage"] % len(_STAGE_COLOURS)]
        width = 0.35 + 0.5 * block["kernel_size"] / max_kernel
        height = 0.3 + 0.9 * block["expand_ratio"] / max_expand
        if block["stage"] != previous_stage:
            ax.axvline(x - 0.5, color="#cccccc", lw=0.8)
            label = f"{block['output_filters']} ch"
            if block["stride"] == 2:
                label += ", /2"
            ax.text(x - 0.45, -0.95, label, fontsize=7, ha="left", va="top", color=colour)
            previous_stage = block["stage"]
        if not block["keep"]:
            ax.add_patch(patches.Rectangle((x - 0.35, 0), 0.7, 0.5, fill=False, ls="--",
                                           ec="#999999"))
            ax.text(x, -0.15, "skip", ha="center", va="top", fontsize=7, color="#999999")
            continue
        ax.add_patch(patches.Rectangle((x - width / 2, 0), width, height, fc=colour, ec="black",
                                       lw=0.6, alpha=0.9 if block["searchable"] else 0.45))
        ax.text(x, -0.15, f"k{block['kernel_size']}\ne{block['expand_ratio']}", ha="center",
                va="top", fontsize=7)
        if block["se_ratio"]:
            ax.text(x, height / 2, f"SE\n{block['se_ratio']:g}", ha="center", va="center",
                    fontsize=6, color="white")
        if block["lightnl_ratio"]:
            ratio = block["lightnl_ratio"]
            text = f"1/{round(1 / ratio)}" if abs(1 / ratio - round(1 / ratio)) < 1e-6 \
                else f"{ratio:g}"
            stride = block["lightnl_stride"]
            ax.plot([x], [height + 0.28], marker="D", ms=8, color="#d62728",
                    mfc="#d62728" if stride == 1 else "white")
            ax.text(x, height + 0.5, f"{text}\ns{stride}", ha="center", va="bottom", fontsize=6,
                    color="#d62728")
    ax.set_xlim(-0.7, len(blocks) - 0.3)
    ax.set_ylim(-1.2, 2.4)
    ax.set_xticks(range(len(blocks)))
    ax.set_xticklabels([str(b["index"]) for b in blocks], fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("block (width ~ kernel, height ~ expansion, diamond = LightNL ratio/stride)")
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)


def _plot_accuracy(ax, summary: Mapping, history: Sequence[Mapping], warmup_steps: int,
                   total_steps: int | None) -> None:
    train = [(row["step"], 100 * row["accuracy"]) for row in history if "accuracy" in row]
    heldout = [(row["step"], 100 * row["top1"]) for row in summary.get("heldout", [])]
    if train:
        ax.plot(*zip(*train, strict=True), color="#9467bd", lw=1.2, label="training top-1")
    if heldout:
        ax.plot(*zip(*heldout, strict=True), "o-", color="#2ca02c", lw=1.6, ms=4,
                label="held-out top-1 (current child)")
    ax.axhline(100.0 / summary["num_classes"], color="#7f7f7f", ls=":", lw=1, label="chance")
    if warmup_steps > 0:
        ax.axvspan(0, warmup_steps, color="#bbbbbb", alpha=0.3)
    steps = [s for s, _ in train + heldout]
    ax.set_xlim(0, max([total_steps or 0, summary["step"], *steps, 1]))
    ax.set_ylim(0, 100)
    ax.set_xlabel("step")
    ax.set_ylabel("top-1 (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    ax.grid(alpha=0.3)


def render_search_figure(summary: Mapping, history: Sequence[Mapping], warmup_steps: int = 0,
                         total_steps: int | None = None) -> bytes:
    """PNG bytes of the search figure for a `autonl_tf.search.report.search_summary` dict."""
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(13, 10),
                                              gridspec_kw={"height_ratios": [1.1, 0.8, 1.0]})
    try:
        latency = summary.get("latency")
        if latency:
            _plot_latency(top, summary, history, warmup_steps, total_steps)
        else:
            _plot_cost(top, summary, history, warmup_steps, total_steps)
        _plot_accuracy(middle, summary, history, warmup_steps, total_steps)
        target = summary.get("target_macs")
        title = (f"AutoNL search, step {summary['step']}: {summary['macs'] / 1e6:.3f}M MACs, "
                 f"{summary['params'] / 1e6:.3f}M params")
        if target:
            title += (f" (target {target / 1e6:.3f}M, "
                      f"{100 * summary['relative_error']:+.2f}%)")
        if latency:
            title += f"; {latency['predicted_ms']:.4f} ms predicted"
            if latency.get("measured_ms") is not None:
                title += f", {latency['measured_ms']:.4f} ms measured"
            if latency.get("target_ms"):
                title += f" (target {latency['target_ms']:.4f} ms)"
        if summary.get("supernet_heldout_top1") is not None:
            title += f"; supernet held-out top-1 {100 * summary['supernet_heldout_top1']:.1f}%"
        top.set_title(title, fontsize=10)
        _plot_network(bottom, summary)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
    finally:
        plt.close(fig)
