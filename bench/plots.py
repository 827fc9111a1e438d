"""The benchmarks' pictures, written as plain SVG (no plotting library to
install): restarts under load as a timeline, the dev loop as bars.

Used by bench/restart.py and bench/devloop.py with `--plots DIR`;
`python bench/all.py --plots` writes them into docs/img/.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

WIDTH = 760
PANEL = 170  # height of one timeline panel
LEFT, RIGHT = 64, 20
BIN = 0.02  # seconds per column of the timeline
BEFORE, AFTER = 0.3, 1.2  # seconds shown around each restart (they are 1.5 s+ apart)
LATENCY_RANGE = (0.1, 3000.0)  # ms, log scale
# On the root element: every text inherits it, and may set its own size.
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

# Marks, and what the legend calls them.
MARKS = {
    "refused": ("#d62728", "connection refused", "refused"),
    "failed": ("#111111", "request failed, even after one retry", "failed"),
    "never": ("#9467bd", "request failed, client that never retries", "never-retry failed"),
    "retried": ("#ff7f0e", "keep-alive request retried once", "retried"),
}


@dataclass
class Timeline:
    """What the load saw during one scenario: times relative to nothing in
    particular (monotonic), aligned on `restarts` when drawn."""

    title: str
    restarts: list[float]
    answered: list[tuple[float, float]] = field(default_factory=list)  # (time, latency s)
    marks: dict[str, list[float]] = field(default_factory=dict)  # kind -> times


def _bins() -> int:
    return round((BEFORE + AFTER) / BIN)


def _aligned(times: Sequence[float], restarts: Sequence[float]) -> list[int]:
    """Counts per column, every restart's window overlaid on t = 0."""
    counts = [0] * _bins()
    for at in restarts:
        for t in times:
            offset = t - at + BEFORE
            if 0 <= offset < BEFORE + AFTER:
                counts[int(offset / BIN)] += 1
    return counts


def _worst_latency(timeline: Timeline) -> list[float]:
    worst = [0.0] * _bins()
    for at in timeline.restarts:
        for t, latency in timeline.answered:
            offset = t - at + BEFORE
            if 0 <= offset < BEFORE + AFTER:
                column = int(offset / BIN)
                worst[column] = max(worst[column], latency * 1000)
    return worst


def _x(column: float) -> float:
    return LEFT + column * (WIDTH - LEFT - RIGHT) / _bins()


def _latency_y(ms: float, top: float) -> float:
    """The latency strip: from top + 44 down to top + PANEL - 26."""
    low, high = (math.log10(v) for v in LATENCY_RANGE)
    share = (math.log10(max(ms, LATENCY_RANGE[0])) - low) / (high - low)
    return top + PANEL - 26 - share * (PANEL - 70)


def _panel(timeline: Timeline, top: float) -> list[str]:
    n = len(timeline.restarts) or 1
    answered = _aligned([t for t, _ in timeline.answered], timeline.restarts)
    peak = max(answered) or 1
    base = top + PANEL - 26
    totals = []
    ticks = []
    for row, (kind, (colour, _, short)) in enumerate(MARKS.items()):
        counts = _aligned(timeline.marks.get(kind, []), timeline.restarts)
        totals.append(f"{short} {sum(counts) / n:.1f}")
        ticks += [
            f'<rect x="{_x(column):.1f}" y="{base + 4 + row * 4}" '
            f'width="{max(_x(1) - LEFT, 2):.2f}" height="3" fill="{colour}"/>'
            for column, count in enumerate(counts)
            if count
        ]
    out = [
        f'<text x="{LEFT}" y="{top + 12}" font-weight="bold">{escape(timeline.title)}</text>',
        f'<text x="{LEFT}" y="{top + 25}" fill="#555">per restart: '
        f"{escape(' · '.join(totals))}</text>",
        f'<text x="{LEFT - 6}" y="{top + 40}" text-anchor="end" fill="#777">answers</text>',
    ]
    # Requests answered per column: a strip of bars at the top.
    for column, count in enumerate(answered):
        height = count / peak * 12
        out.append(
            f'<rect x="{_x(column):.1f}" y="{top + 41 - height:.1f}" '
            f'width="{_x(1) - LEFT:.2f}" height="{height:.1f}" fill="#9ecae1"/>'
        )
    for ms in (1, 10, 100, 1000):
        y = _latency_y(ms, top)
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#08519c">'
            f"{ms} ms</text>"
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
    # The slowest answer per column (log scale); a gap where none came.
    segment: list[str] = []
    lines = []
    for column, ms in enumerate(_worst_latency(timeline)):
        if ms > 0:
            segment.append(f"{_x(column + 0.5):.1f},{_latency_y(ms, top):.1f}")
            continue
        if segment:
            lines.append(segment)
        segment = []
    if segment:
        lines.append(segment)
    out += [
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#08519c" stroke-width="1.2"/>'
        for points in lines
    ]
    out += ticks
    zero = _x(BEFORE / BIN)
    out.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top + 28}" y2="{base + 18}" '
        'stroke="#444" stroke-dasharray="4 3"/>'
    )
    return out


def write_restart_timelines(timelines: Sequence[Timeline], path: Path, caption: str) -> None:
    """One panel per scenario, every restart overlaid at t = 0: requests
    answered per 20 ms (the strip), the slowest of them (the line, log
    scale), and a tick under it for each 20 ms with a refused connection or
    a failed request."""
    height = 40 + PANEL * len(timelines) + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" {FONT}>',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="13">{escape(caption)}</text>',
    ]
    for i, timeline in enumerate(timelines):
        out += _panel(timeline, 30 + i * PANEL)
    axis = 30 + PANEL * len(timelines)
    for tenth in range(-round(BEFORE * 10), round(AFTER * 10) + 1, 3):
        t = tenth / 10
        x = _x((t + BEFORE) / BIN)
        out.append(f'<text x="{x:.1f}" y="{axis + 4}" text-anchor="middle">{t:+.1f} s</text>')
    out.append(
        f'<text x="{LEFT}" y="{axis + 24}" fill="#555">the dashed line: the restart '
        "(signal, or systemctl); ticks under each panel: a 20 ms with at least one</text>"
    )
    for i, (colour, label, _) in enumerate(MARKS.values()):
        x = LEFT + (i % 2) * 330
        y = axis + 40 + (i // 2) * 14
        out.append(
            f'<rect x="{x}" y="{y - 5}" width="10" height="4" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{y}">{escape(label)}</text>'
        )
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


@dataclass
class Bar:
    group: str  # e.g. "FastAPI shop, uvicorn"
    label: str  # e.g. "listenfd run --watch (warm standby)"
    value: float  # ms
    note: str = ""  # e.g. "12 refused"


def write_bars(bars: Sequence[Bar], path: Path, caption: str, unit: str = "ms") -> None:
    """Horizontal bars, grouped, on one linear scale."""
    row, gap, label_width = 18, 12, 200
    groups = list(dict.fromkeys(b.group for b in bars))
    height = 40 + sum(row * sum(b.group == g for b in bars) + gap + row for g in groups) + 10
    peak = max((b.value for b in bars), default=1) or 1
    span = WIDTH - label_width - 190
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" {FONT}>',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="13">{escape(caption)}</text>',
    ]
    y = 40
    for group in groups:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(group)}</text>')
        y += row
        for bar in (b for b in bars if b.group == group):
            width = bar.value / peak * span
            text = f"{bar.value:.0f} {unit}" + (f" · {bar.note}" if bar.note else "")
            out.append(
                f'<text x="{label_width - 8}" y="{y + 12}" text-anchor="end">'
                f"{escape(bar.label)}</text>"
                f'<rect x="{label_width}" y="{y + 2}" width="{width:.1f}" height="{row - 5}" '
                'fill="#4292c6"/>'
                f'<text x="{label_width + width + 5:.1f}" y="{y + 12}">{escape(text)}</text>'
            )
            y += row
        y += gap
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
