"""The scaling sweep: the power-law fit on points with a known law, its refusals, and `sokhan sweep` end to end."""

import json
import math

import pytest

from sokhan.cli import main
from sokhan.config import SweepConfig
from sokhan.errors import SokhanError
from sokhan.eval.scaling import SweepPoint, compute_frontier, fit_scaling, flops_label
from test_cli import assert_one_line_error, sokhan

A, B = 7.5, 0.0625         # bits/char = A · C^(−B) on the frontier
K, C = 2e5 / 1e6, 0.5      # the best size at each budget: N = K · C^0.5
BUDGETS = (1e12, 4e12, 1.6e13, 6.4e13)
SIZES = (2e5, 4e5, 8e5, 1.6e6)  # the best at each budget, in order; the others do worse


def synthetic_sweep() -> list[SweepPoint]:
    """Every size at every budget: the size N = K·√C lies on the law, every other one is worse by a margin
    that grows with its distance from it (in both directions, as an IsoFLOP profile does)."""
    points = []
    for i, budget in enumerate(BUDGETS):
        for j, n in enumerate(SIZES):
            bpc = A * budget ** -B * (1 + 0.03 * abs(i - j))
            points.append(SweepPoint(f"{j}-{flops_label(budget)}", f"size{j}", budget, budget, int(n), bpc))
    return points


def test_the_fit_recovers_a_known_law_and_the_compute_optimal_sizes():
    points = synthetic_sweep()
    assert K * BUDGETS[0] ** C == pytest.approx(SIZES[0])  # the law of the sizes is the one the points follow
    fit = fit_scaling(points[::-1])  # the order the runs come in does not matter
    assert fit.b == pytest.approx(B, abs=1e-9) and fit.a == pytest.approx(A, rel=1e-9)
    assert fit.c == pytest.approx(C, abs=1e-9) and fit.k == pytest.approx(K, rel=1e-9)
    assert fit.rms_log == pytest.approx(0.0, abs=1e-9)
    assert [p.budget for p in fit.frontier] == list(BUDGETS)
    assert [p.parameters for p in fit.frontier] == [int(n) for n in SIZES]
    assert fit.bpc_at(1e15) == pytest.approx(A * 1e15 ** -B, rel=1e-9)
    assert fit.size_at(1e14) == pytest.approx(K * 1e7, rel=1e-9)
    # the fit is of the frontier only: runs far above it change nothing
    worse = [SweepPoint("bad", "tiny", b, b, 1000, 9.0) for b in BUDGETS]
    assert fit_scaling(points + worse) == fit
    # a tie at a budget goes to the smaller model
    tie = SweepPoint("tie", "size-1", BUDGETS[0], BUDGETS[0], 100_000, points[0].bpc)
    assert compute_frontier([points[0], tie])[0] is tie


def test_the_fit_uses_the_compute_each_run_spent():
    """A run trains whole steps, so it spends a little more than its budget: the law is fitted against that."""
    points = [SweepPoint(f"r{i}", "s", budget, budget * 1.01, 1000, A * (budget * 1.01) ** -B)
              for i, budget in enumerate(BUDGETS)]
    fit = fit_scaling(points)
    assert fit.b == pytest.approx(B, abs=1e-9) and fit.a == pytest.approx(A, rel=1e-9)


@pytest.mark.parametrize(("points", "fragment"), [
    ([SweepPoint("a", "s", 1e12, 1e12, 1000, 3.0), SweepPoint("b", "t", 1e12, 1e12, 2000, 2.9)], "two compute budgets"),
    ([], "two compute budgets"),
    ([SweepPoint("a", "s", 1e12, 1e12, 1000, 3.0), SweepPoint("b", "s", 2e12, 2e12, 1000, 0.0)], "bits/char 0.0"),
    ([SweepPoint("a", "s", 1e12, 1e12, 1000, -1.0), SweepPoint("b", "s", 2e12, 2e12, 1000, 2.0)], "bits/char -1.0"),
    ([SweepPoint("a", "s", 1e12, 1e12, 1000, math.nan), SweepPoint("b", "s", 2e12, 2e12, 1000, 2.0)], "bits/char"),
    ([SweepPoint("a", "s", 1e12, 0.0, 1000, 3.0), SweepPoint("b", "s", 2e12, 2e12, 1000, 2.0)], "compute 0.0"),
    ([SweepPoint("a", "s", 1e12, 5e12, 1000, 3.0), SweepPoint("b", "s", 2e12, 5e12, 1000, 2.0)], "too close"),
])
def test_the_fit_refuses_what_no_power_law_fits(points, fragment):
    with pytest.raises(SokhanError) as e:
        fit_scaling(points)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_sweep_config_checks_its_grid():
    cfg = SweepConfig(sizes=["2x64,3×96", " 4 x 128 "])
    assert cfg.sizes == ["2x64", "3x96", "4x128"]
    assert cfg.model("3x96") == dict(family="gpt", n_layer=3, n_head=3, n_embd=96, block_size=128,
                                     positional="rope", dropout=0.0)
    for values, fragment in [({"budgets": [1e12]}, "two compute budgets"), ({"budgets": [1e12, 1e12]}, "repeat"),
                             ({"budgets": [0.0, 1e12]}, "budgets must be > 0"), ({"sizes": ["4x"]}, "LAYERSxWIDTH"),
                             ({"sizes": []}, "empty"), ({"sizes": ["2x64", "2×64"]}, "repeat"),
                             ({"sizes": ["1x100"]}, "size 1x100: n_embd=100 is not divisible by n_head=3")]:
        with pytest.raises(SokhanError) as e:
            SweepConfig(**values)
        assert fragment in str(e.value) and "\n" not in str(e.value)


def sweep(out) -> dict:
    code = main(["sweep", "--out-dir", str(out), "--source", "hafez", "--sizes", "1x16,1x32", "--budgets", "1e8,3e8",
                 "--block-size", "32", "--batch-size", "4", "--no-progress"])
    assert code == 0
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))


def test_sweep_end_to_end_writes_its_files_and_repeats_exactly(tmp_path):
    first, second = sweep(tmp_path / "a"), sweep(tmp_path / "b")
    assert {r["run"] for r in first["runs"]} == {"1x16-1e8", "1x32-1e8", "1x16-3e8", "1x32-3e8"}
    for name in ("sweep.png", "sweep.html"):
        assert (tmp_path / "a" / name).stat().st_size > 10_000
    assert "1x32-3e8" in (tmp_path / "a" / "sweep.md").read_text(encoding="utf-8")
    for r in first["runs"]:  # each run spends its budget in whole steps of 4 × 32 tokens, and no more
        step = 6 * r["parameters"] * 4 * 32
        assert r["budget"] <= r["flops"] < r["budget"] + step and r["tokens"] == r["steps"] * 4 * 32
        assert 0 < r["val_bpc"] < math.log2(400)
    # the same seed, the same figures: budgets are compute, not seconds
    assert [r["val_bpc"] for r in first["runs"]] == [r["val_bpc"] for r in second["runs"]]
    assert first["fit"] == second["fit"] and first["fit"]["b"] > 0
    assert len(first["fit"]["frontier"]) == 2


def test_bad_sweep_options_are_one_line(tmp_path):
    assert_one_line_error(sokhan("sweep", "--budgets", "1e12", "--out-dir", str(tmp_path)), "two compute budgets")
    assert_one_line_error(sokhan("sweep", "--sizes", "4by128", "--out-dir", str(tmp_path)), "LAYERSxWIDTH")
    assert_one_line_error(sokhan("sweep", "--budgets", "lots", "--out-dir", str(tmp_path)), "budgets", "float")
