"""The scaling fit of a sweep: held-out bits per character against training compute, as a power law.

A sweep trains several model sizes at each of a few compute budgets (`sokhan sweep`). At each
budget the best run is the compute frontier there (Kaplan et al. 2020, §3 and Figure 1: the
envelope of loss against compute), and its size is the compute-optimal size at that budget, read
off the grid of sizes trained (Hoffmann et al. 2022, "Chinchilla", Approach 2, IsoFLOP profiles,
taking the best size tried rather than the minimum of a parabola through them: three sizes make
a parabola that only interpolates).

Fitted, by least squares on logarithms (numpy), over the frontier's runs:

    bits/char ≈ a · C^(−b)          C: the run's training compute, 6 · N · D FLOPs
    N_opt     ≈ k · C^c             N_opt: the parameters of the best run at each budget

The loss is the plain bits per character, with no irreducible term subtracted (Kaplan's L(C),
not Chinchilla's E + A/N^α + B/D^β): fitting an offset E needs more budgets, spread wider, than a
CPU sweep has, and with three or four points it is fitted to the noise. The honest reading is
therefore local: b is the slope of the frontier over the budgets swept, and a pure power law
keeps falling where the real curve flattens towards the text's entropy, so it must not be
extrapolated far. C is each frontier run's own compute (N and D as the leaderboard counts them,
`RunSummary.train_flops`: every weight, embeddings included), which is a little above its budget
because a run trains whole steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sokhan.errors import SokhanError
from sokhan.eval.leaderboard import short
from sokhan.inspect.picture import XY, Picture, Series


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: the budget it was given, the compute it spent, its size and its held-out score."""

    run: str
    size: str          # layers × width, as the leaderboard writes it
    budget: float      # the compute asked for (FLOPs): runs of one budget compete for the frontier
    flops: float       # the compute spent, 6 · parameters · tokens (≥ budget: whole steps)
    parameters: int
    bpc: float         # held-out bits per character


@dataclass(frozen=True)
class ScalingFit:
    """bits/char ≈ a · C^(−b) on the frontier, and the compute-optimal size N_opt ≈ k · C^c."""

    a: float
    b: float
    k: float
    c: float
    frontier: tuple[SweepPoint, ...]  # the best run at each budget, smallest budget first
    rms_log: float                    # the fit's root-mean-square residual in log2(bits/char)

    def bpc_at(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.a * np.power(flops, -self.b)

    def size_at(self, flops: float | np.ndarray) -> float | np.ndarray:
        return self.k * np.power(flops, self.c)

    def to_dict(self) -> dict[str, object]:
        return {"law": "bits/char = a * C^(-b); N_opt = k * C^c", "a": self.a, "b": self.b, "k": self.k, "c": self.c,
                "rms_log2": self.rms_log, "frontier": [asdict(p) for p in self.frontier]}


def power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(coefficient, exponent) of y ≈ coefficient · x^exponent, least squares on log y against log x."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    design = np.stack([np.ones_like(lx), lx], axis=1)
    (log_coefficient, exponent), *_ = np.linalg.lstsq(design, ly, rcond=None)
    return float(np.exp(log_coefficient)), float(exponent)


def compute_frontier(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The best run (lowest bits/char; on a tie, the smaller model) at each budget, smallest budget first."""
    best: dict[float, SweepPoint] = {}
    for p in points:
        held = best.get(p.budget)
        if held is None or (p.bpc, p.parameters) < (held.bpc, held.parameters):
            best[p.budget] = p
    return [best[b] for b in sorted(best)]


def fit_scaling(points: Sequence[SweepPoint]) -> ScalingFit:
    """Fit the frontier of a sweep's runs. Needs two budgets or more and positive, finite figures."""
    for p in points:
        for name, value in (("bits/char", p.bpc), ("compute", p.flops), ("budget", p.budget),
                            ("parameters", p.parameters)):
            if not (math.isfinite(value) and value > 0):
                raise SokhanError(f"run {p.run or '?'} has {name} {value}; a power law needs positive, finite figures")
    frontier = compute_frontier(points)
    if len(frontier) < 2:
        raise SokhanError(f"a scaling fit needs runs at two compute budgets or more, got {len(frontier)}")
    flops = [p.flops for p in frontier]
    if len(set(flops)) < 2:
        raise SokhanError("the best runs of every budget spent the same compute: the budgets are too close to fit")
    a, slope = power_law(flops, [p.bpc for p in frontier])
    k, c = power_law(flops, [p.parameters for p in frontier])
    residual = np.log2([p.bpc for p in frontier]) - np.log2(a * np.power(flops, slope))
    return ScalingFit(a, -slope, k, c, tuple(frontier), float(np.sqrt(np.mean(residual ** 2))))


def flops_label(flops: float) -> str:
    """6e12, 2.5e11: a budget as one types it (and as a run folder is named)."""
    mantissa, exponent = f"{flops:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def scaling_picture(points: Sequence[SweepPoint], fit: ScalingFit, title: str, name: str = "sweep") -> Picture:
    """Bits/char against compute, one line per size, and the frontier's fit dashed; beside it, the best size per
    budget and its fit. Both fits are drawn over the compute swept only: a power law is a local reading."""
    flops = np.array([p.flops for p in points])
    span = np.geomspace(flops.min(), flops.max(), 64)
    sizes = sorted({p.size: p.parameters for p in points}.items(), key=lambda item: item[1])
    curves = []
    for i, (size, parameters) in enumerate(sizes):
        runs = sorted((p for p in points if p.size == size), key=lambda p: p.flops)
        curves.append(Series(f"{size} ({short(parameters)} parameters)", np.array([p.flops for p in runs]),
                             np.array([p.bpc for p in runs]), "line+markers", [p.run for p in runs],
                             color=f"C{i % 10}"))
    curves.append(Series(f"fit: {fit.a:.3g} · C^−{fit.b:.3f}", span, fit.bpc_at(span), "line", color="black",
                         dashed=True))
    curves.append(Series("best at its budget", np.array([p.flops for p in fit.frontier]),
                         np.array([p.bpc for p in fit.frontier]), "markers", [p.run for p in fit.frontier],
                         color="black"))
    values = np.array([p.bpc for p in points])
    pad = 0.08 * max(values.max() - values.min(), 0.05)
    compute = "training compute ≈ 6 · parameters · tokens (FLOPs)"
    optimal = [Series("best size at its budget", np.array([p.flops for p in fit.frontier]),
                      np.array([p.parameters for p in fit.frontier], dtype=np.float64), "markers",
                      [p.size for p in fit.frontier], annotate=True, color="black"),
               Series(f"fit: N ≈ {fit.k:.3g} · C^{fit.c:.3f}", span, fit.size_at(span), "line", color="black",
                      dashed=True)]
    optimal += [Series(size, span[[0, -1]], np.array([parameters] * 2, dtype=np.float64), "line", [size, size],
                       color=f"C{i % 10}", legend=False) for i, (size, parameters) in enumerate(sizes)]  # the grid
    panels = [XY(curves, "bits per character against compute, one line per size", compute,
                 "validation bits per character (lower is better)", log_x=True,
                 y_range=(float(values.min() - pad), float(values.max() + pad))),
              XY(optimal, "the compute-optimal size among those trained", compute, "parameters of the best run",
                 log_x=True, log_y=True, y_range=(sizes[0][1] / 1.5, sizes[-1][1] * 1.5))]  # every size trained
    return Picture(name, title, panels, columns=2, panel_size=(6.0, 4.8))
