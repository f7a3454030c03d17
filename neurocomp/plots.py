"""The report's figures, drawn with matplotlib's Agg backend (no display needed).

Every function takes plain data (lists / numpy arrays, the same values the
report writes to ``report.json``) and returns the PNG as bytes.  Figures are
built on ``matplotlib.figure.Figure`` directly (no pyplot state), and PNGs
carry no timestamp or software tag, so the same data gives the same bytes.
"""
from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np

DPI = 100
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return (n + ncols - 1) // ncols, ncols


def accuracy_curve(curves: dict, *, ann: Optional[float] = None, qann: Optional[float] = None,
                   latency: Optional[int] = None, marks: Optional[dict] = None, title: str = "") -> bytes:
    """Accuracy against time steps: one line per entry of ``curves``
    (``label -> (steps, accuracy)``), dashed lines at the float ANN and
    quantised-ANN accuracy, a dotted line at the latency L and a dot at each
    ``marks[label] = (steps, accuracy)`` (e.g. the compiled run length)."""
    fig = _figure(9, 5)
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, (steps, acc)) in enumerate(curves.items()):
        ax.plot(steps, acc, color=_COLORS[k % 10], lw=1.8, label=f"SNN {label}")
        if marks and label in marks:
            ax.plot(*marks[label], "o", color=_COLORS[k % 10], ms=6)
    if ann is not None:
        ax.axhline(ann, color="black", ls="--", lw=1, label=f"float ANN {ann:.3f}")
    if qann is not None:
        ax.axhline(qann, color="gray", ls=":", lw=1.5, label=f"quantised ANN {qann:.3f}")
    if latency is not None:
        ax.axvline(latency, color="tab:red", ls=":", lw=1, label=f"latency L = {latency}")
    ax.set_xlabel("time steps per sample")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title(title or "accuracy vs time steps")
    fig.tight_layout()
    return _png(fig)


def activation_scatter(layers: Sequence[tuple], title: str = "") -> bytes:
    """Per layer, ANN activation (x) against the SNN's value (y) for a sample
    of neurons x samples: ``layers`` holds ``(name, ann, snn, r)`` with
    ``r`` the Pearson correlation over all points (shown in the title)."""
    nrows, ncols = _grid(len(layers))
    fig = _figure(3.2 * ncols, 3.0 * nrows + 0.5)
    for k, (name, a, s, r) in enumerate(layers):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        a, s = np.asarray(a, float), np.asarray(s, float)
        ax.scatter(a, s, s=3, alpha=0.35, color=_COLORS[k % 10], linewidths=0, rasterized=True)
        if a.size:
            lo, hi = float(min(a.min(), s.min())), float(max(a.max(), s.max()))
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
        rs = "n/a" if r is None or not np.isfinite(r) else f"{r:.4f}"
        ax.set_title(f"{name}  r = {rs}", fontsize=10)
        ax.set_xlabel("ANN activation (1 = scale)", fontsize=8)
        ax.set_ylabel("SNN value", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "ANN vs SNN activations per layer", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def rate_histogram(layers: Sequence[tuple], title: str = "") -> bytes:
    """Per layer, a histogram of neurons' mean spike rates (spikes per step):
    ``layers`` holds ``(name, bin_edges, counts)``."""
    nrows, ncols = _grid(len(layers))
    fig = _figure(3.2 * ncols, 2.8 * nrows + 0.5)
    for k, (name, edges, counts) in enumerate(layers):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        edges, counts = np.asarray(edges, float), np.asarray(counts, float)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_COLORS[k % 10],
               edgecolor="white", linewidth=0.3)
        ax.set_title(f"{name}: {int(counts.sum()):,} neurons", fontsize=9)
        ax.set_xlabel("spikes per step", fontsize=8)
        ax.set_ylabel("neurons", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(edges[0], edges[-1])
    fig.suptitle(title or "spike rates per neuron", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def raster(layers: Sequence[tuple], steps: int, title: str = "") -> bytes:
    """Spike raster of one sample: ``layers`` holds ``(name, neurons, t, i)``
    (spike times and neuron indices within the layer); layers are stacked
    bottom-up, the first at the bottom."""
    fig = _figure(10, 6)
    ax = fig.add_subplot(1, 1, 1)
    offset, ticks, labels = 0, [], []
    total = sum(int(n) for _, n, _, _ in layers) or 1
    size = 4.0 if total < 2000 else 1.0
    for k, (name, n, t, i) in enumerate(layers):
        t, i = np.asarray(t), np.asarray(i)
        ax.scatter(t + 1, i + offset, s=size, marker="|", color=_COLORS[k % 10], linewidths=0.6,
                   rasterized=True)
        ticks.append(offset + n / 2)
        labels.append(f"{name}\n({len(t):,} spikes)")
        offset += int(n)
        ax.axhline(offset - 0.5, color="gray", lw=0.5)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.5, offset - 0.5 if offset else 1)
    ax.set_xlim(0.5, steps + 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron (per layer)")
    ax.set_title(title or "spike raster")
    fig.tight_layout()
    return _png(fig)


def core_utilisation(cores: Sequence[dict], limits: dict, title: str = "") -> bytes:
    """Per core, the fraction of each per-core resource used (``limits``:
    resource -> per-core capacity); bars coloured by population."""
    resources = list(limits)
    fig = _figure(10, 1.8 * len(resources) + 1.0)
    pops = list(dict.fromkeys(c["population"] for c in cores))
    color = {p: _COLORS[k % 10] for k, p in enumerate(pops)}
    x = np.arange(len(cores))
    axes = []
    for r, res in enumerate(resources):
        ax = fig.add_subplot(len(resources), 1, r + 1, sharex=axes[0] if axes else None)
        axes.append(ax)
        frac = np.array([c[res] / max(1, limits[res]) for c in cores], float) * 100
        ax.bar(x, frac, width=0.8 if len(cores) < 200 else 1.0, color=[color[c["population"]] for c in cores])
        top = float(frac.max()) if frac.size else 0.0
        # scale to the data (small networks use little of a core) but show the capacity when near
        ax.set_ylim(0, max(1.0, top * 1.3))
        if top * 1.3 >= 100:
            ax.axhline(100, color="tab:red", lw=0.8, ls="--")
        if len(cores) <= 32:
            for xi, v in zip(x, frac):
                ax.text(xi, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=7)
        mean = float(frac.mean()) if frac.size else 0.0
        ax.set_ylabel(f"{res}\n% of {limits[res]:,}\n(mean {mean:.1f}%)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    if len(cores) <= 32:
        axes[-1].set_xticks(x)
        axes[-1].set_xticklabels([f"{c['chip']}:{c['core']}" for c in cores], fontsize=7)
    else:
        from matplotlib.ticker import MaxNLocator
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("core (chip:core, in mapping order)" if len(cores) <= 32 else "core (in mapping order)")
    handles = [_patch(color[p], p) for p in pops[:12]]
    axes[0].legend(handles=handles, fontsize=7, ncol=min(6, len(handles)), loc="upper right")
    fig.suptitle(title or "core utilisation per resource", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _patch(color, label):
    from matplotlib.patches import Patch
    return Patch(color=color, label=label)
