"""Small inline SVG charts for the report: no scripts, no fonts or images fetched, readable when printed."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

POSITIVE, NEGATIVE, ACCENT, MUTED = "#2a7f62", "#c0392b", "#2c5d8f", "#999"


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    start = (low // step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def bars(values: Sequence[float], labels: Sequence[str], fmt: Callable[[float], str], *,
         line: Sequence[float] | None = None, line_label: str = "", title: str = "", width: int = 760,
         height: int = 240) -> str:
    """Vertical bars (green up, red down) with an optional line (e.g. the cumulative flow) on the same axis."""
    left, bottom, top_pad = 90, 28, 16
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    series = list(values) + list(line or [])
    top = max(max(series, default=0.0), 0.0)
    low = min(min(series, default=0.0), 0.0)
    if top == low:
        top = low + 1
    def y(v: float) -> float:
        return top_pad + (top - v) / (top - low) * plot_h

    slot = plot_w / max(len(values), 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img" aria-label="{_esc(title)}">']
    for tick in _ticks(low, top):
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{_esc(fmt(tick))}</text>')
    parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#555"/>')
    every = max(1, len(values) // 12)
    for i, v in enumerate(values):
        x = left + i * slot
        y0, y1 = sorted((y(0), y(v)))
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{y0:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{max(y1 - y0, 0.5):.1f}" fill="{POSITIVE if v >= 0 else NEGATIVE}">'
                     f'<title>{_esc(labels[i])}: {_esc(fmt(v))}</title></rect>')
        if i % every == 0:
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="10">'
                         f'{_esc(labels[i])}</text>')
    if line:
        points = " ".join(f"{left + (i + 0.5) * slot:.1f},{y(v):.1f}" for i, v in enumerate(line))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
        parts.append(f'<text x="{width - 12}" y="{top_pad + 10}" text-anchor="end" font-size="11" '
                     f'fill="{ACCENT}">— {_esc(line_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def tornado(rows: Sequence[dict[str, object]], base: float, fmt: Callable[[float], str], *, low_label: str,
            high_label: str, width: int = 760) -> str:
    """Horizontal bars from the base NPV to the NPV at −X % (light) and +X % (dark) of each driver."""
    label_w, row_h, top_pad = 210, 24, 24
    values = [float(r[k]) for r in rows for k in ("low", "high")] + [base]  # type: ignore[arg-type]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    plot_w = width - label_w - 20
    def x(v: float) -> float:
        return label_w + (v - lo) / span * plot_w

    height = top_pad + row_h * len(rows) + 24
    parts = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img">',
             f'<rect x="{label_w}" y="4" width="12" height="10" fill="#9cc3e6"/>'
             f'<text x="{label_w + 16}" y="13" font-size="11">{_esc(low_label)}</text>'
             f'<rect x="{label_w + 150}" y="4" width="12" height="10" fill="{ACCENT}"/>'
             f'<text x="{label_w + 166}" y="13" font-size="11">{_esc(high_label)}</text>']
    for i, r in enumerate(rows):
        ytop = top_pad + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{ytop + 15}" text-anchor="end" font-size="11">'
                     f'{_esc(str(r["driver"]))}</text>')
        for key, colour in (("low", "#9cc3e6"), ("high", ACCENT)):
            v = float(r[key])  # type: ignore[arg-type]
            a, b = sorted((x(base), x(v)))
            parts.append(f'<rect x="{a:.1f}" y="{ytop + 3}" width="{max(b - a, 1):.1f}" height="{row_h - 6}" '
                         f'fill="{colour}"><title>{_esc(str(r["driver"]))} {key}: {_esc(fmt(v))}</title></rect>')
    parts.append(f'<line x1="{x(base):.1f}" x2="{x(base):.1f}" y1="{top_pad - 4}" y2="{height - 20}" '
                 f'stroke="#000"/><text x="{x(base):.1f}" y="{height - 6}" text-anchor="middle" font-size="10">'
                 f'{_esc(fmt(base))}</text>')
    if lo < 0 < hi:
        parts.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top_pad - 4}" y2="{height - 20}" '
                     f'stroke="{NEGATIVE}" stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(counts: Sequence[int], edges: Sequence[float], markers: dict[str, float],
              fmt: Callable[[float], str], *, width: int = 760, height: int = 220) -> str:
    """The NPV distribution, bins below zero in red, with labelled vertical markers (P10, P50, P90)."""
    left, bottom, top_pad = 20, 30, 18
    plot_w, plot_h = width - 2 * left, height - bottom - top_pad
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    peak = max(counts, default=1) or 1
    def x(v: float) -> float:
        return left + (v - lo) / span * plot_w

    parts = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img">']
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        h = c / peak * plot_h
        colour = NEGATIVE if b <= 0 else POSITIVE if a >= 0 else "#d4a017"
        parts.append(f'<rect x="{x(a):.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(x(b) - x(a) - 1, 0.5):.1f}"'
                     f' height="{h:.1f}" fill="{colour}"><title>{_esc(fmt(a))} … {_esc(fmt(b))}: {c}</title></rect>')
    for name, value in markers.items():
        parts.append(f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top_pad}" y2="{top_pad + plot_h}" '
                     f'stroke="#000" stroke-dasharray="3 2"/><text x="{x(value):.1f}" y="{top_pad - 4}" '
                     f'text-anchor="middle" font-size="10">{_esc(name)}</text>')
    for value in (lo, hi):
        parts.append(f'<text x="{x(value):.1f}" y="{height - 8}" text-anchor="middle" font-size="10">'
                     f'{_esc(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def grouped(labels: Sequence[str], series: dict[str, Sequence[float]], *, width: int = 760,
            height: int = 240) -> str:
    """Grouped vertical bars with values printed (multipliers by sector)."""
    left, bottom, top_pad = 40, 44, 20
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    colours = [ACCENT, "#e67e22", POSITIVE, "#8e44ad"]
    top = max((v for values in series.values() for v in values), default=1.0) or 1.0
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * 0.8 / max(len(series), 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img">']
    for k, name in enumerate(series):
        parts.append(f'<rect x="{left + k * 140}" y="2" width="12" height="10" fill="{colours[k % 4]}"/>'
                     f'<text x="{left + k * 140 + 16}" y="11" font-size="11">{_esc(name)}</text>')
    for i, label in enumerate(labels):
        for k, values in enumerate(series.values()):
            v = values[i]
            h = v / top * plot_h
            xpos = left + i * slot + slot * 0.1 + k * bar_w
            parts.append(f'<rect x="{xpos:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{colours[k % 4]}"/><text x="{xpos + bar_w / 2:.1f}" '
                         f'y="{top_pad + plot_h - h - 2:.1f}" text-anchor="middle" font-size="9">{v:.2f}</text>')
        parts.append(f'<text x="{left + (i + 0.5) * slot:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                     f'font-size="10">{_esc(label[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def quadrant(x: float, y: float, labels: dict[str, str], *, size: int = 260) -> str:
    """The SWOT position on the (S − W, O − T) plane."""
    half = size / 2
    reach = max(abs(x), abs(y), 1.0) * 1.2
    px, py = half + x / reach * (half - 10), half - y / reach * (half - 10)
    corners = {"SO": (size - 8, 16, "end"), "WO": (8, 16, "start"), "WT": (8, size - 8, "start"),
               "ST": (size - 8, size - 8, "end")}
    parts = [f'<svg viewBox="0 0 {size} {size}" class="quadrant" role="img">',
             f'<rect width="{size}" height="{size}" fill="#fafafa" stroke="#ccc"/>',
             f'<line x1="{half}" x2="{half}" y1="0" y2="{size}" stroke="#555"/>',
             f'<line x1="0" x2="{size}" y1="{half}" y2="{half}" stroke="#555"/>']
    for key, (cx, cy, anchor) in corners.items():
        parts.append(f'<text x="{cx}" y="{cy}" text-anchor="{anchor}" font-size="11">{_esc(labels[key])}</text>')
    parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{NEGATIVE}"/>'
                 f'<text x="{px + 8:.1f}" y="{py - 8:.1f}" font-size="10">({x:.2f}, {y:.2f})</text></svg>')
    return "".join(parts)
