"""A picture as data: panels (heatmap, bars, token row, x–y plot) that both renderers draw.

Every picture sokhan makes (the `sokhan inspect` views, a run's loss curve, the
leaderboard) is one `Picture`; `save_picture` (`save.py`) draws it twice from the same
numbers, as a PNG (matplotlib, `png.py`) and as a standalone HTML page (drawn by the
shared script `view.js` from the embedded JSON, `html.py`). What the pictures show is
therefore exactly what the Python object holds, which is what the tests compare with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex


def colour_stops(cmap: str, n: int = 17) -> list[list[int]]:
    """A matplotlib colour map sampled as RGB stops, so the HTML page colours cells as the PNG does."""
    rgba = colormaps[cmap](np.linspace(0.0, 1.0, n))
    return [[round(c * 255) for c in row[:3]] for row in rgba]


def _jsonable(value: Any) -> Any:
    """numpy → lists, non-finite floats → null (JSON has no NaN), floats to 6 significant digits."""
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return value.tolist()
        return [_jsonable(v) for v in value] if value.ndim > 1 else [_jsonable(float(v)) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{value:.6g}") if np.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Heatmap:
    """A matrix: `values[i, j]` at row i, column j; `mask` marks cells that were never allowed (drawn hatched)."""

    values: np.ndarray
    rows: list[str]                  # one label per row (tokens, or position numbers)
    cols: list[str]
    title: str
    row_name: str                    # axis titles, with units: "query token", "position (tokens)"
    col_name: str
    value_name: str                  # the colour bar: "attention weight (probability)"
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None
    mask: np.ndarray | None = None   # bool, True = masked
    mask_label: str = "masked"
    colorbar: bool = True
    annotate: bool = False           # write each cell's value in it (a small matrix of counts: a confusion matrix)
    kind: str = "heatmap"

    def json(self) -> dict[str, Any]:
        vals = np.asarray(self.values, dtype=np.float64)
        vmin = float(np.nanmin(vals)) if self.vmin is None else self.vmin
        vmax = float(np.nanmax(vals)) if self.vmax is None else self.vmax
        return _jsonable({"kind": self.kind, "title": self.title, "values": vals, "rows": self.rows,
                          "cols": self.cols, "row_name": self.row_name, "col_name": self.col_name,
                          "value_name": self.value_name, "stops": colour_stops(self.cmap), "vmin": vmin,
                          "vmax": vmax, "mask": self.mask, "mask_label": self.mask_label,
                          "colorbar": self.colorbar, "annotate": self.annotate})


@dataclass
class Bars:
    """Horizontal bars, the first at the top: e.g. the top-k next tokens and their probabilities."""

    labels: list[str]
    values: np.ndarray
    title: str
    label_name: str                  # "next token"
    value_name: str                  # "probability"
    percent: bool = True             # write values as percentages
    kind: str = "bars"

    def json(self) -> dict[str, Any]:
        return _jsonable({"kind": self.kind, "title": self.title, "labels": self.labels,
                          "values": np.asarray(self.values, dtype=np.float64), "label_name": self.label_name,
                          "value_name": self.value_name, "percent": self.percent})


CHAR_INCHES = 0.09  # about one character of 10-point text: the unit token boxes are measured in (PNG)
LINE_INCHES = 0.36  # one line of token boxes


@dataclass
class Tokens:
    """A text as a row of token boxes coloured by a value (NaN: no value, drawn grey), with a colour bar."""

    tokens: list[str]
    values: np.ndarray
    title: str
    value_name: str                  # "surprisal (bits)"
    rtl: bool = False                # lay the boxes out right to left (a Persian text)
    cmap: str = "YlOrRd"
    vmin: float = 0.0
    vmax: float | None = None
    notes: list[str] | None = None   # extra hover text per token, e.g. "p = 3.1 %"
    kind: str = "tokens"

    def widths(self) -> list[float]:
        """Box widths in character widths (the PNG's unit): the text plus a margin."""
        return [1.0 * len(t) + 1.6 for t in self.tokens]

    def lines(self, room: float) -> list[list[int]]:
        """Token indices per line, greedily filling lines `room` character widths long."""
        rows: list[list[int]] = [[]]
        used = 0.0
        for i, w in enumerate(self.widths()):
            if rows[-1] and used + w > room:
                rows.append([])
                used = 0.0
            rows[-1].append(i)
            used += w
        return rows

    def json(self) -> dict[str, Any]:
        vals = np.asarray(self.values, dtype=np.float64)
        vmax = self.vmax if self.vmax is not None else float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0
        return _jsonable({"kind": self.kind, "title": self.title, "tokens": self.tokens, "values": vals,
                          "value_name": self.value_name, "rtl": self.rtl, "stops": colour_stops(self.cmap),
                          "vmin": self.vmin, "vmax": max(vmax, self.vmin + 1e-9), "notes": self.notes})


@dataclass
class Series:
    """One line (or set of points) on an `XY` panel."""

    name: str
    x: np.ndarray
    y: np.ndarray
    mode: str = "line"               # line | markers | line+markers
    labels: list[str] | None = None  # per-point text; with `annotate`, written next to the point
    annotate: bool = False
    color: str | None = None         # a matplotlib colour name or hex; None = next in the cycle
    dashed: bool = False
    legend: bool = True              # listed in the legend (the name still shows on hover)

    def json(self) -> dict[str, Any]:
        return _jsonable({"name": self.name, "x": np.asarray(self.x, dtype=np.float64),
                          "y": np.asarray(self.y, dtype=np.float64), "mode": self.mode, "labels": self.labels,
                          "annotate": self.annotate, "color": _hex(self.color), "dashed": self.dashed,
                          "legend": self.legend})


def _hex(color: str | None) -> str | None:
    return None if color is None else to_hex(color)


@dataclass
class XY:
    """Curves or a scatter of points against two labelled axes."""

    series: list[Series]
    title: str
    x_name: str
    y_name: str
    log_x: bool = False
    log_y: bool = False
    legend: bool = True
    y_range: tuple[float, float] | None = None  # None: fit every point
    kind: str = "xy"

    def json(self) -> dict[str, Any]:
        return _jsonable({"kind": self.kind, "title": self.title, "series": [s.json() for s in self.series],
                          "x_name": self.x_name, "y_name": self.y_name, "log_x": self.log_x, "log_y": self.log_y,
                          "legend": self.legend, "y_range": self.y_range})


Panel = Heatmap | Bars | Tokens | XY


@dataclass
class Picture:
    """A titled grid of panels, saved as NAME.png and NAME.html."""

    name: str
    title: str
    panels: list[Panel]
    columns: int = 1
    subtitle: str = ""               # e.g. the text the model read
    panel_size: tuple[float, float] = (5.0, 4.2)  # inches per panel in the PNG
    row_heights: list[float] | None = None        # inches per row of panels, when rows differ
    png: Path | None = None                       # where `save_picture` wrote the files
    html: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # figures a caller may want (not drawn)

    def json(self) -> dict[str, Any]:
        w, h = self.panel_size
        return {"title": self.title, "subtitle": self.subtitle, "columns": self.columns,
                "panel_px": [round(w * 90), round(h * 90)], "panels": [p.json() for p in self.panels]}
