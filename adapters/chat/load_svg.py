"""A small line-chart writer for the load generator's `--plot`, in plain
SVG: one picture is not worth a plotting library as a dependency, and an
SVG opens in any browser.

A chart is a stack of panels sharing the x axis; each panel has its
series (lines; a None value breaks the line, so a gap in the data shows
as one) and a linear or logarithmic y axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

Point = tuple[float, float | None]

COLORS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 130, 56, 45
PANEL_GAP = 40


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[Point]
    color: str | None = None  # None: the next of COLORS


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    y_label: str
    series: Sequence[Series]
    log_y: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2 or 5 times a power of ten)
    covering [low, high]: the first at or below `low`, the last at or
    above `high`."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"no ticks for [{low}, {high}]")
    if high == low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """1, 2 and 5 times the powers of ten from one at or below `low` to one
    at or above `high` (both positive); only the powers of ten when that
    would be more than a dozen ticks."""
    if not (0 < low <= high) or not math.isfinite(high):
        raise ValueError(f"no logarithmic ticks for [{low}, {high}]")
    first = math.floor(math.log10(low) + 1e-9)
    last = math.ceil(math.log10(high) - 1e-9)
    if last == first:
        last += 1
    steps = (1, 2, 5) if 3 * (last - first) <= 12 else (1,)
    ticks = [m * 10.0**e for e in range(first, last) for m in steps]
    ticks.append(10.0**last)
    below = [t for t in ticks if t <= low]
    above = [t for t in ticks if t >= high]
    start = ticks.index(below[-1]) if below else 0
    end = ticks.index(above[0]) if above else len(ticks) - 1
    return [float(f"{t:.12g}") for t in ticks[start : end + 1]]


def label(value: float) -> str:
    """A tick label without float noise: 0.1, 2, 1500, 1e+06."""
    return f"{value:.6g}"


def render(
    panels: Sequence[Panel], *, title: str, x_label: str, width: int = 900, height: int = 260
) -> str:
    """The SVG document: the panels stacked, `height` pixels each, over one
    x axis (the range of every series' x values)."""
    if not panels:
        raise ValueError("nothing to plot")
    xs = [x for panel in panels for series in panel.series for x, _ in series.points]
    x_ticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    x_low, x_high = x_ticks[0], x_ticks[-1]
    plot_width = width - MARGIN_LEFT - MARGIN_RIGHT
    total_height = MARGIN_TOP + len(panels) * (height + PANEL_GAP) + MARGIN_BOTTOM - PANEL_GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{total_height}" fill="white"/>',
        f'<text x="{width / 2:.1f}" y="22" text-anchor="middle" font-size="15">'
        f"{escape(title)}</text>",
    ]

    def x_of(x: float) -> float:
        return MARGIN_LEFT + (x - x_low) / (x_high - x_low) * plot_width

    color_index = 0
    for number, panel in enumerate(panels):
        top = MARGIN_TOP + number * (height + PANEL_GAP)
        bottom = top + height
        values = [y for series in panel.series for _, y in series.points if y is not None]
        if panel.log_y:
            positive = [y for y in values if y > 0]
            y_ticks = log_ticks(min(positive, default=1.0), max(positive, default=10.0))
        else:
            y_ticks = nice_ticks(min([0.0, *values]), max(values, default=1.0))
        y_low, y_high = y_ticks[0], y_ticks[-1]

        y_of = _YScale(bottom, height, y_low, y_high, panel.log_y)
        out.append(
            f'<rect x="{MARGIN_LEFT}" y="{top}" width="{plot_width}" height="{height}" '
            'fill="none" stroke="#888"/>'
        )
        out.append(f'<text x="{MARGIN_LEFT}" y="{top - 6}">{escape(panel.title)}</text>')
        for tick in y_ticks:
            y = y_of(tick)
            out.append(
                f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{MARGIN_LEFT + plot_width}" '
                f'y2="{y:.1f}" stroke="#eee"/>'
            )
            out.append(
                f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{label(tick)}</text>"
            )
        middle = (top + bottom) / 2
        out.append(
            f'<text x="16" y="{middle:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 16 {middle:.1f})">{escape(panel.y_label)}</text>'
        )
        for tick in x_ticks:
            x = x_of(tick)
            out.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#f3f3f3"/>'
            )
            out.append(
                f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{label(tick)}</text>'
            )
        for row, series in enumerate(panel.series):
            color = series.color or COLORS[color_index % len(COLORS)]
            color_index += 1
            for run in _unbroken(series.points):
                if len(run) == 1:
                    x, y = run[0]
                    out.append(
                        f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2" fill="{color}"/>'
                    )
                else:
                    drawn = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in run)
                    out.append(
                        f'<polyline points="{drawn}" fill="none" stroke="{color}" '
                        'stroke-width="1.5"/>'
                    )
            legend_y = top + 14 + row * 16
            legend_x = MARGIN_LEFT + plot_width + 10
            out.append(
                f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 18}" '
                f'y2="{legend_y - 4}" stroke="{color}" stroke-width="2"/>'
            )
            out.append(
                f"<text x={quoteattr(str(legend_x + 24))} y={quoteattr(str(legend_y))}>"
                f"{escape(series.name)}</text>"
            )
    axis_y = MARGIN_TOP + len(panels) * (height + PANEL_GAP) - PANEL_GAP + 32
    out.append(
        f'<text x="{MARGIN_LEFT + plot_width / 2:.1f}" y="{axis_y}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


@dataclass(frozen=True, slots=True)
class _YScale:
    """A panel's y value to its pixel row."""

    bottom: float
    height: float
    low: float
    high: float
    log: bool

    def __call__(self, y: float) -> float:
        return self.bottom - share(y, self.low, self.high, log=self.log) * self.height


def share(y: float, low: float, high: float, *, log: bool) -> float:
    """Where `y` sits between `low` (0.0) and `high` (1.0), on a linear or
    a logarithmic scale (values at or below zero go to the bottom there)."""
    if log:
        return (math.log10(max(y, low)) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return (y - low) / (high - low)


def _unbroken(points: Sequence[Point]) -> list[list[tuple[float, float]]]:
    """The stretches of a series between its missing values."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]
