"""Tests of analysis/vertices.py: the one parabola-vertex + power-law helper."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.vertices import parabola_vertex, vertex, vertex_power_law

REPO = Path(__file__).resolve().parents[1]


def test_vertex_rules():
    x = np.log([1e4, 2e4, 4e4, 8e4, 1.6e5])
    y = (x - math.log(4e4)) ** 2 + 1.5
    v = vertex(1e12, x, y)
    assert v.included and math.exp(v.x) == pytest.approx(4e4, rel=1e-9) and v.y == pytest.approx(1.5)
    assert "outside" in vertex(1.0, x, (x - math.log(1e6)) ** 2).reason           # extrapolated
    assert "downwards" in vertex(1.0, x, -(x - x.mean()) ** 2).reason
    assert "min_points" in vertex(1.0, x[:2], y[:2]).reason
    assert not vertex(1.0, np.r_[x[:2], x[:2]], np.r_[y[:2], y[:2]]).included       # < 3 distinct x
    # local: the lowest point and its neighbours, clipped; the edge point at a scan's edge
    lv = vertex(1.0, x, y, local=True)
    assert lv.included and math.exp(lv.x) == pytest.approx(4e4, rel=1e-9)
    edge = vertex(1.0, x, -x, local=True)
    assert edge.x == x[-1] and "edge" in edge.reason
    c, xv, yv = parabola_vertex([0.0, 1.0, 2.0], [1.0, 0.0, 1.0])
    assert xv == pytest.approx(1.0) and yv == pytest.approx(0.0)


def test_power_law_through_vertices():
    groups = {}
    for C in (1e18, 1e19, 1e20):
        n_opt = 0.1 * C ** 0.5
        x = np.log(n_opt) + np.linspace(-1, 1, 5)
        groups[C] = (x, (x - np.log(n_opt)) ** 2)
    fit = vertex_power_law(groups)
    assert fit.slope == pytest.approx(0.5, rel=1e-9) and math.exp(fit.intercept) == pytest.approx(0.1, rel=1e-9)
    assert len(fit.included) == 3
    assert math.isnan(vertex_power_law({1e18: groups[1e18]}).slope)      # one group < min_groups


def _prior_from_results_reference(path, n_col="n_total", loss_col="eval_loss", budget_col="budget"):
    """What a planner's prior computes from a results.csv: per budget the IsoFLOP minimum
    in log N, then a line through (log(C/6), log N_opt), written out in full."""
    groups: dict = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("state", "done") != "done":
                continue
            C, n, loss = float(row[budget_col]), float(row[n_col]), float(row[loss_col])
            groups.setdefault(C, []).append((math.log(n), loss))
    opt = []
    for C, pts in sorted(groups.items()):
        x, y = np.array(pts).T
        c2, c1, _ = np.polyfit(x, y, 2)
        xm = -c1 / (2 * c2) if c2 > 0 else None
        if xm is not None and x.min() < xm < x.max():
            opt.append((math.log(C / 6.0), xm))
    a, logG = np.polyfit(*np.array(opt).T, 1)
    return math.exp(logG), a


def test_helper_reproduces_a_planner_prior_bit_for_bit():
    path = REPO / "experiments" / "results" / "quickstart" / "results.csv"
    groups: dict = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            groups.setdefault(float(row["budget"]) / 6.0, ([], []))
            groups[float(row["budget"]) / 6.0][0].append(math.log(float(row["n_total"])))
            groups[float(row["budget"]) / 6.0][1].append(float(row["eval_loss"]))
    fit = vertex_power_law(groups)
    G, a = _prior_from_results_reference(path)
    assert math.exp(fit.intercept) == G and fit.slope == a


def test_vertices_imports_only_numpy():
    code = ("import sys, analysis.vertices, analysis.published; "
            "print(sorted(m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
