"""Parabola vertex per group, then a power law through the vertices (numpy only).

The step behind Chinchilla's Approach 2, a sweep planner's prior fitted on earlier budgets
and a learning-rate rule fitted on an LR sweep is the same two-stage fit:

1. per group (an IsoFLOP budget, a model size), a least-squares parabola ``y = c0 x^2 +
   c1 x + c2`` in ``x`` (log N, log LR, ...) and its vertex, the group's optimum;
2. a straight line through ``(log key, x_vertex)`` over the groups, i.e. a power law
   ``exp(x_opt) = exp(intercept) key^slope``.

This module imports nothing but numpy at module level, so planners can use it without
paying for pandas or scipy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Vertex:
    """One group's parabola and its minimum.

    ``x``/``y`` are the vertex and the parabola's value there; both are NaN when the group
    was excluded for having no minimum.  ``included`` is False (with ``reason``) when the
    group cannot give an optimum: too few points, a parabola that opens downwards, or a
    vertex outside the sampled x range (an extrapolated optimum).
    """

    key: float
    n_points: int
    coef: tuple[float, float, float]
    x: float
    y: float
    included: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class VertexPowerLaw:
    """``x_opt = slope * log(key) + intercept`` through the included vertices."""

    slope: float
    intercept: float
    vertices: tuple[Vertex, ...]

    @property
    def included(self) -> tuple[Vertex, ...]:
        return tuple(v for v in self.vertices if v.included)


NAN3 = (math.nan, math.nan, math.nan)


def parabola_vertex(x, y) -> tuple[np.ndarray, float, float]:
    """Least-squares parabola through (x, y): its coefficients, vertex x and value there.

    The vertex is NaN when the parabola opens downwards (no minimum).
    """
    c = np.polyfit(x, y, 2)
    if c[0] <= 0:
        return c, math.nan, math.nan
    xv = -c[1] / (2 * c[0])
    return c, float(xv), float(np.polyval(c, xv))


def vertex(key: float, x, y, *, min_points: int = 3, local: bool = False) -> Vertex:
    """The optimum of one group.

    ``local=False``: a parabola through every point; the group is excluded when it has
    fewer than ``min_points`` points or 3 distinct x, when the parabola opens downwards,
    or when its vertex is not strictly inside the sampled range.

    ``local=True`` (a coarse 1-D scan, e.g. learning rates a factor 2 apart): a parabola
    through the lowest point and its two neighbours, its vertex clipped to their range;
    the lowest point itself when it sits at the edge of the scan or the parabola opens
    downwards.  Always included.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = int(x.size)
    if local:
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        i = int(np.argmin(y))
        if 0 < i < n - 1:
            c, xv, _ = parabola_vertex(x[i - 1:i + 2], y[i - 1:i + 2])
            xb = float(np.clip(xv if math.isfinite(xv) else x[i], x[i - 1], x[i + 1]))
            return Vertex(key, n, tuple(map(float, c)), xb, float(np.polyval(c, xb)), True)
        return Vertex(key, n, NAN3, float(x[i]), float(y[i]), True, "lowest point at the edge of the scan")
    if n < min_points:
        return Vertex(key, n, NAN3, math.nan, math.nan, False, f"{n} point(s) < min_points={min_points}")
    if np.unique(x).size < 3:
        return Vertex(key, n, NAN3, math.nan, math.nan, False,
                      f"{n} point(s) but {np.unique(x).size} distinct x value(s); a parabola needs >= 3")
    c, xv, yv = parabola_vertex(x, y)
    coef = tuple(map(float, c))
    if not math.isfinite(xv):
        return Vertex(key, n, coef, math.nan, math.nan, False, "parabola opens downwards (no minimum)")
    if not (x.min() < xv < x.max()):
        return Vertex(key, n, coef, xv, yv, False, "minimum outside the sampled range (not interior)")
    return Vertex(key, n, coef, xv, yv, True)


def power_law(log_x, log_y) -> tuple[float, float]:
    """Least-squares slope and intercept of ``log_y = slope * log_x + intercept``."""
    slope, intercept = np.polyfit(log_x, log_y, 1)
    return float(slope), float(intercept)


def vertex_power_law(groups: Mapping[float, tuple[Sequence[float], Sequence[float]]], *,
                     min_points: int = 3, local: bool = False,
                     min_groups: int = 2) -> VertexPowerLaw:
    """:func:`vertex` per group (``{key: (x, y)}``, keys > 0), then :func:`power_law` through
    ``(log key, x_vertex)`` of the included groups, in increasing key order.

    With fewer than ``min_groups`` included groups the slope and intercept are NaN; the
    caller decides whether that is an error.  With exactly one group and ``min_groups=1``
    the slope is 0 and the intercept that group's vertex.
    """
    verts = tuple(vertex(k, *groups[k], min_points=min_points, local=local) for k in sorted(groups))
    good = [v for v in verts if v.included]
    if len(good) < max(min_groups, 1):
        return VertexPowerLaw(math.nan, math.nan, verts)
    if len(good) == 1:
        return VertexPowerLaw(0.0, good[0].x, verts)
    # math.log, not np.log: planners hash what they derive from this fit, so it must not
    # depend on numpy's vectorised log (which may differ from libm in the last bit)
    slope, intercept = power_law([math.log(v.key) for v in good], [v.x for v in good])
    return VertexPowerLaw(slope, intercept, verts)
