"""Reward and KL per training step: a PNG through matplotlib when it is installed, else a hand-written SVG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from a3cli._io import atomic_write_bytes, atomic_write_text


def _series(stats: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in stats if isinstance(r.get(key), int | float) and math.isfinite(r[key])]


def plot_reward_kl(stats: Sequence[dict[str, Any]], out_stem: str | Path, *, kl_key: str = "kl_mean") -> Path:
    """Write `<out_stem>.png` (matplotlib) or `<out_stem>.svg`; returns the path written."""
    panels = [("mean reward", _series(stats, "score_mean")), (f"KL ({kl_key})", _series(stats, kl_key))]
    out_stem = Path(out_stem)
    try:
        import matplotlib
    except ImportError:
        path = out_stem.with_suffix(".svg")
        atomic_write_text(path, svg_panels(panels))
        return path
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for ax, (title, pts) in zip(axes, panels, strict=True):
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("training step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = out_stem.with_suffix(".png")
    atomic_write_bytes(path, buf.getvalue())
    return path


def svg_panels(panels: Sequence[tuple[str, Sequence[tuple[float, float]]]], width: int = 640, panel_h: int = 200) -> str:
    """Stacked line charts, one per (title, points), sharing the x axis."""
    left, right, top, bottom = 70, 20, 28, 30
    height = panel_h * len(panels)
    xs = [x for _, pts in panels for x, _ in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    pw = width - left - right
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            'font-family="sans-serif" font-size="12">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, (title, pts) in enumerate(panels):
        oy = i * panel_h
        ys = [y for _, y in pts] or [0.0, 1.0]
        y0, y1 = min(ys), max(ys)
        if y1 - y0 < 1e-12:
            y0, y1 = y0 - 0.5, y1 + 0.5
        ph = panel_h - top - bottom

        def px(x: float) -> float:
            return left + (x - x0) / (x1 - x0) * pw

        def py(y: float, oy: int = oy, y0: float = y0, y1: float = y1, ph: int = ph) -> float:
            return oy + top + (1 - (y - y0) / (y1 - y0)) * ph

        out.append(f'<text x="{left}" y="{oy + 18}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<rect x="{left}" y="{oy + top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for frac in (0.0, 0.5, 1.0):
            y = y0 + frac * (y1 - y0)
            out.append(f'<text x="{left - 6}" y="{py(y):.1f}" text-anchor="end" dominant-baseline="middle">{y:.3g}</text>')
        for frac in (0.0, 0.5, 1.0):
            x = x0 + frac * (x1 - x0)
            out.append(f'<text x="{px(x):.1f}" y="{oy + panel_h - 10}" text-anchor="middle">{x:.0f}</text>')
        if pts:
            line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end" fill="#555">step</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
