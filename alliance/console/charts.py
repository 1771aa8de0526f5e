"""Geometry for the small inline SVG charts of the console (no chart library: a bar chart is a few
rectangles, and server-side SVG needs no script, which keeps the content security policy strict)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bar", "BarChart", "bar_chart"]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    max_value: int
    tick_labels: list[Bar]  # x positions of the labels shown under the axis (every few bars)
    reference: int | None = None  # a limit drawn as a line across the bars (a budget), if any
    reference_y: float | None = None


def _nice_ceiling(value: int) -> int:
    """The smallest of 2, 4, 6, 8, 10, 20, 40 ... at or above ``value``: a round top whose half (the
    middle grid line) is a whole number too."""
    magnitude = 1
    while True:
        for step in (2, 4, 6, 8, 10):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def bar_chart(
    values: Sequence[int],
    labels: Sequence[str],
    *,
    width: int = 640,
    height: int = 180,
    label_every: int = 5,
    reference: int | None = None,
) -> BarChart:
    """Bars for ``values`` scaled to a round maximum, leaving room for the axis labels; ``reference``
    (a budget, say) is drawn as a line and included in the scale."""
    if len(values) != len(labels):
        raise ValueError("one label per value")
    left, right, top, bottom = 40, 8, 10, height - 24
    top_value = _nice_ceiling(max([*values, reference or 0]))
    slot = (width - left - right) / max(1, len(values))
    bars = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_height = (bottom - top) * value / top_value
        bars.append(
            Bar(
                x=round(left + i * slot + slot * 0.15, 1),
                y=round(bottom - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=round(bar_height, 1),
                value=value,
                label=label,
            )
        )
    count = len(bars)
    ticks = [b for i, b in enumerate(bars) if (count - 1 - i) % label_every == 0]
    return BarChart(
        width=width,
        height=height,
        plot_top=top,
        plot_bottom=bottom,
        bars=bars,
        max_value=top_value,
        tick_labels=ticks,
        reference=reference,
        reference_y=round(bottom - (bottom - top) * reference / top_value, 1) if reference is not None else None,
    )
