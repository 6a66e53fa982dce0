"""Draw a `Picture` with matplotlib, Persian labels shaped by `render.display`.

Figures are made with `matplotlib.figure.Figure`, not pyplot: no global figure state and no
GUI backend, so pictures can be drawn from any thread (the server's) and saved with Agg.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import EngFormatter

from sokhan.inspect.picture import CHAR_INCHES, LINE_INCHES, XY, Bars, Heatmap, Picture, Tokens
from sokhan.inspect.render import display, font_family

DPI = 110
MASK_STYLE = dict(facecolor="#e6e6e6", edgecolor="#a0a0a0", hatch="///", linewidth=0)


def tick_step(n: int, most: int = 48) -> int:
    """Label every k-th row/column so that at most `most` labels crowd an axis."""
    return max(1, math.ceil(n / most))


def label_size(n: int, panel_inches: float) -> float:
    """A tick-label font size (points) that lets n labels share one axis of a panel."""
    return float(np.clip(panel_inches * 72 / max(n, 1) * 0.8, 4.0, 9.0))


def draw_heatmap(fig: Figure, ax: Axes, p: Heatmap, inches: float, row_title: bool = True,
                 col_title: bool = True) -> bool:
    """imshow of the matrix; masked cells are left transparent over a hatched grey patch. Returns: any masked?

    `row_title`/`col_title` False leave the axis titles to the grid's outer panels.
    """
    values = np.asarray(p.values, dtype=np.float64)
    n, m = values.shape
    cmap = colormaps[p.cmap].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # masked cells: transparent
    masked = p.mask is not None and bool(np.asarray(p.mask).any())
    shown = np.ma.masked_array(values, mask=np.asarray(p.mask, dtype=bool)) if masked else values
    if masked:
        ax.add_patch(Rectangle((-0.5, -0.5), m, n, zorder=0, **MASK_STYLE))
    image = ax.imshow(shown, cmap=cmap, vmin=p.vmin, vmax=p.vmax, interpolation="nearest", aspect="auto", zorder=1)
    for axis, labels, count in ((ax.yaxis, p.rows, n), (ax.xaxis, p.cols, m)):
        step = tick_step(count, 16 if all(label.isdigit() for label in labels) else 64)  # numbers need fewer
        axis.set_ticks(range(0, count, step))
        axis.set_ticklabels([display(labels[i]) for i in range(0, count, step)],
                            fontsize=label_size(count // step, inches))
    ax.tick_params(axis="x", labelrotation=0 if p.annotate else 90)  # a small matrix of values has room to spare
    if p.annotate:
        write_cells(ax, values, image)
    ax.set_ylabel(p.row_name if row_title else "")
    ax.set_xlabel(p.col_name if col_title else "")
    ax.set_title(display(p.title), fontsize=10)
    if p.colorbar:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label(p.value_name)
    return masked


def write_cells(ax: Axes, values: np.ndarray, image: ScalarMappable) -> None:
    """Each cell's value written in it, white on a dark colour, black on a light one (as view.js writes them)."""
    for (i, j), v in np.ndenumerate(values):
        if not np.isfinite(v):
            continue
        colour = image.to_rgba(v)
        dark = np.dot(colour[:3], [0.299, 0.587, 0.114]) < 0.5
        ax.text(j, i, cell_text(v), ha="center", va="center", fontsize=9, color="white" if dark else "black",
                zorder=2)


def cell_text(v: float) -> str:
    """A count as an integer, any other value to 3 significant digits."""
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


def draw_bars(ax: Axes, p: Bars, inches: float) -> None:
    values = np.asarray(p.values, dtype=np.float64)
    ys = np.arange(len(values))
    ax.barh(ys, values, color="tab:blue")
    ax.set_yticks(ys, [display(t) for t in p.labels], fontsize=label_size(len(values), inches) + 2)
    ax.invert_yaxis()  # the most likely on top
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:.1%}" if p.percent else f" {v:.3g}", va="center", fontsize=8)
    ax.set_xlim(0, max(float(values.max(initial=0.0)) * 1.2, 1e-6))
    ax.set_xlabel(p.value_name)
    ax.set_ylabel(p.label_name)
    ax.set_title(display(p.title), fontsize=10)
    ax.grid(axis="x", alpha=0.3)




def draw_tokens(fig: Figure, ax: Axes, p: Tokens, size: tuple[float, float]) -> None:
    """Token boxes laid out in lines (right to left for a Persian text), each filled by its value's colour."""
    values = np.asarray(p.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    vmax = p.vmax if p.vmax is not None else float(finite.max()) if finite.size else 1.0
    norm = Normalize(p.vmin, max(vmax, p.vmin + 1e-9))
    cmap = colormaps[p.cmap]
    widths = p.widths()
    room = size[0] / CHAR_INCHES
    rows = p.lines(room)
    for r, row in enumerate(rows):
        x = 0.0
        for i in row:
            w = widths[i]
            left = room - x - w if p.rtl else x
            colour = cmap(norm(values[i])) if np.isfinite(values[i]) else (0.85, 0.85, 0.85, 1.0)
            ax.add_patch(Rectangle((left + 0.15, -r - 0.4), w - 0.3, 0.8, facecolor=colour, edgecolor="#555555",
                                   linewidth=0.5))
            dark = np.dot(colour[:3], [0.299, 0.587, 0.114]) < 0.5
            ax.text(left + w / 2, -r, display(p.tokens[i]), ha="center", va="center", fontsize=10,
                    color="white" if dark else "black")
            x += w
    shown = max(len(rows), size[1] / LINE_INCHES)  # keep boxes one line high however tall the panel
    ax.set_xlim(0, room)
    ax.set_ylim(-shown + 0.5, 0.5)
    ax.set_axis_off()
    ax.set_title(display(p.title), fontsize=10)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, orientation="horizontal", fraction=0.08, pad=0.04,
                       aspect=40)
    bar.set_label(p.value_name)


def draw_xy(ax: Axes, p: XY) -> None:
    for s in p.series:
        x, y = np.asarray(s.x, dtype=np.float64), np.asarray(s.y, dtype=np.float64)
        style = {"line": "-", "markers": "o", "line+markers": "o-"}[s.mode]
        if s.dashed:
            style = style.replace("-", "--")
        kwargs = dict(markersize=3 if s.mode == "markers" else 4, linewidth=1.2, label=s.name if s.legend else None)
        if s.color:
            kwargs["color"] = s.color
        ax.plot(x, y, style, alpha=0.85, zorder=3 if "o" in style else 2, **kwargs)  # dots over lines
        if s.annotate and s.labels:
            for xi, yi, text in zip(x, y, s.labels):
                ax.annotate(display(text), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=8)
    if p.log_x:
        ax.set_xscale("log")
    elif max((np.nanmax(np.abs(s.x)) for s in p.series if np.isfinite(s.x).any()), default=0) >= 1e5:
        ax.xaxis.set_major_formatter(EngFormatter())  # 2M tokens, not 0.2 × 1e7
    if p.log_y:
        ax.set_yscale("log")
    if p.y_range:
        ax.set_ylim(*p.y_range)
    ax.set_xlabel(p.x_name)
    ax.set_ylabel(p.y_name)
    ax.set_title(display(p.title), fontsize=10)
    ax.grid(alpha=0.3)
    if p.legend and any(s.name and s.legend for s in p.series):
        ax.legend(fontsize=7, loc="best")


def write_png(picture: Picture, path: str | Path) -> Path:
    """Render every panel into one figure (a grid of `picture.columns`) and save it."""
    cols = max(1, min(picture.columns, len(picture.panels)))
    rows = math.ceil(len(picture.panels) / cols)
    w, h = picture.panel_size
    with matplotlib.rc_context({"font.family": font_family(), "axes.unicode_minus": False}):
        heights = picture.row_heights or [h] * rows
        fig = Figure(figsize=(w * cols, sum(heights) + 0.6), dpi=DPI, layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={"height_ratios": heights})
        any_masked = False
        # A grid of like heatmaps (attention heads) names its axes once, on the outer panels.
        alike = len({(p.row_name, p.col_name) for p in picture.panels if isinstance(p, Heatmap)}) == 1 and \
            all(isinstance(p, Heatmap) for p in picture.panels)
        for i, (ax, panel) in enumerate(zip(axes.flat, picture.panels)):
            if isinstance(panel, Heatmap):
                outer_col = not alike or i % cols == 0
                outer_row = not alike or i + cols >= len(picture.panels)
                any_masked |= draw_heatmap(fig, ax, panel, min(w, h), outer_col, outer_row)
                mask_label = panel.mask_label
            elif isinstance(panel, Bars):
                draw_bars(ax, panel, h)
            elif isinstance(panel, Tokens):
                draw_tokens(fig, ax, panel, (w, heights[i // cols]))
            elif isinstance(panel, XY):
                draw_xy(ax, panel)
        for ax in list(axes.flat)[len(picture.panels):]:
            ax.set_axis_off()
        title = picture.title + (f"\n{display(picture.subtitle)}" if picture.subtitle else "")
        fig.suptitle(title, fontsize=12)
        if any_masked:
            fig.legend(handles=[Patch(label=mask_label, **MASK_STYLE)], loc="outside lower right", fontsize=8)
        fig.savefig(path)
    return Path(path)
