"""Objectives over fitted mixture laws, the predicted optimum, and where to explore.

Objectives (`Objective.parse`):

    min val/text/bpb
    max reasoning/prob_correct
    min 0.5*val/text/bpb + 0.5*val/code_web/bpb; val/code_web/bpb <= 1.2

a sense, a weighted sum of targets, then optional constraints after ";"
(TARGET <= X or TARGET >= X). `optimum(laws, objective, bounds)` searches the
simplex of the varying families within `bounds` (default: the range the data
cover, since a law is not trusted outside it): a grid of step 1/400 .. 1/40
for up to 4 varying families, SLSQP from several starts beyond. The interval
of the optimum is the spread of the optima of the bootstrap laws.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize

from codemix.analysis.mixture_law import LEVEL, Law, LawError, _eval

_TERM = re.compile(r"^\s*(?:([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?(\S+)\s*$")
_CONSTRAINT = re.compile(r"^\s*(\S+)\s*(<=|>=)\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*$")


@dataclasses.dataclass(frozen=True)
class Objective:
    """sense ("min"/"max") of sum(weight * target), subject to (target, "<="/">=", bound) constraints."""

    sense: str
    terms: Mapping[str, float]
    constraints: tuple[tuple[str, str, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Objective:
        """"min|max W*TARGET + W*TARGET ...; TARGET <= X; ..." (see the module docstring)."""
        head, *cons = [p for p in text.split(";")]
        words = head.strip().split(None, 1)
        if len(words) != 2 or words[0] not in ("min", "max"):
            raise LawError(f"objective {text!r}: start with min or max, e.g. 'min val/text/bpb' or "
                           f"'min 0.5*val/text/bpb + 0.5*val/code_web/bpb; val/code_web/bpb <= 1.2'.")
        terms: dict[str, float] = {}
        for part in re.split(r"\s\+\s", words[1]):
            m = _TERM.match(part)
            if not m:
                raise LawError(f"objective {text!r}: cannot read the term {part.strip()!r}; write W*TARGET.")
            terms[m.group(2)] = terms.get(m.group(2), 0.0) + float(m.group(1) or 1.0)
        constraints = []
        for c in (c for c in cons if c.strip()):
            m = _CONSTRAINT.match(c)
            if not m:
                raise LawError(f"objective {text!r}: constraint {c.strip()!r} must read TARGET <= X or TARGET >= X.")
            constraints.append((m.group(1), m.group(2), float(m.group(3))))
        return cls(words[0], terms, tuple(constraints))

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys([*self.terms, *(c[0] for c in self.constraints)]))

    def __str__(self) -> str:
        s = f"{self.sense} " + " + ".join(f"{w:g}*{t}" if w != 1 else t for t, w in self.terms.items())
        return s + "".join(f"; {t} {op} {b:g}" for t, op, b in self.constraints)


@dataclasses.dataclass(frozen=True)
class Optimum:
    """The predicted optimum: shares over the laws' families, with bootstrap intervals.

    shares_low/high: percentile interval of each share over the bootstrap
    laws' own optima; predicted: {target: (value, low, high)} at `shares`
    (band of the bootstrap laws there); objective: the objective's value;
    feasible_fraction: bootstrap laws that found a feasible point.
    """

    families: tuple[str, ...]
    shares: np.ndarray
    shares_low: np.ndarray
    shares_high: np.ndarray
    objective: float
    predicted: Mapping[str, tuple[float, float, float]]
    feasible_fraction: float

    def as_dict(self) -> dict[str, float]:
        return {f: float(s) for f, s in zip(self.families, self.shares)}


def candidates(families: Sequence[str], varying: Sequence[str], fixed: Mapping[str, float],
               bounds: Mapping[str, tuple[float, float]], step: float | None = None) -> np.ndarray:
    """Grid over the simplex of the varying families (sum = 1 - fixed shares) within bounds."""
    m = len(varying)
    n = round(1 / step) if step else {2: 400, 3: 200, 4: 60}.get(m, 40)
    total = 1 - sum(fixed.values())
    free = np.array(list(itertools.product(range(n + 1), repeat=m - 1)), dtype=np.float64).reshape(-1, m - 1) / n
    free = free[free.sum(axis=1) <= 1 + 1e-9] * total
    grid = np.column_stack([free, total - free.sum(axis=1)])
    ok = np.ones(len(grid), bool)
    for j, f in enumerate(varying):
        lo, hi = bounds.get(f, (0.0, 1.0))
        ok &= (grid[:, j] >= lo - 1e-9) & (grid[:, j] <= hi + 1e-9)
    out = np.zeros((int(ok.sum()), len(families)))
    for j, f in enumerate(varying):
        out[:, families.index(f)] = grid[ok, j]
    for f, v in fixed.items():
        out[:, families.index(f)] = v
    return out


def _check_laws(laws: Mapping[str, Law], objective: Objective) -> Law:
    missing = [t for t in objective.targets if t not in laws]
    if missing:
        raise LawError(f"the objective needs laws for {missing}; fitted: {sorted(laws)}.")
    first = laws[objective.targets[0]]
    for t in objective.targets:
        if laws[t].families != first.families or laws[t].varying != first.varying:
            raise LawError(f"laws {first.target} and {t} were fitted on different families; fit them on the same runs.")
    return first


def _score(values: Mapping[str, np.ndarray], objective: Objective) -> np.ndarray:
    """The objective to MINIMISE at each candidate, +inf where a constraint fails."""
    total = sum(w * values[t] for t, w in objective.terms.items())
    total = np.where(np.isfinite(total), total if objective.sense == "min" else -total, np.inf)
    for t, op, b in objective.constraints:
        total = np.where(values[t] <= b if op == "<=" else values[t] >= b, total, np.inf)
    return total


def law_optimum(law: Law, objective: str | Objective = "min", bounds: Mapping | None = None) -> Optimum:
    """`optimum({law.target: law}, objective, bounds)`; "min"/"max" alone mean the law's own target."""
    if isinstance(objective, str) and objective.strip() in ("min", "max"):
        objective = Objective(objective.strip(), {law.target: 1.0})
    return optimum({law.target: law}, objective, bounds)


def optimum(laws: Mapping[str, Law], objective: str | Objective, bounds: Mapping | None = None,
            level: float = LEVEL) -> Optimum:
    """The best mixture under `objective` (see the module docstring); LawError when nothing is feasible."""
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    first = _check_laws(laws, obj)
    bounds = {**{f: first.share_range[f] for f in first.varying}, **(bounds or {})}
    if len(first.varying) > 4:
        return _optimum_slsqp(laws, obj, first, bounds, level)
    grid = candidates(first.families, first.varying, first.fixed, bounds)
    if not len(grid):
        raise LawError(f"no mixture satisfies the bounds {bounds}.")
    targets = obj.targets
    point = _score({t: laws[t].predict(grid) for t in targets}, obj)
    if not np.isfinite(point).any():
        raise LawError(f"no mixture within {bounds} satisfies {obj} under the fitted laws.")
    best = int(np.argmin(point))
    boots = {t: laws[t].predict_boot(grid) for t in targets}
    n_boot = min(len(b) for b in boots.values())
    bests = []
    for i in range(n_boot):
        sc = _score({t: boots[t][i] for t in targets}, obj)
        if np.isfinite(sc).any():
            bests.append(grid[int(np.argmin(sc))])
    return _result(laws, obj, first, grid[best], float(point[best]), np.asarray(bests), n_boot, level)


def _result(laws, obj, first, best, value, bests, n_boot, level) -> Optimum:
    q = (1 - level) / 2
    lo = np.quantile(bests, q, axis=0) if len(bests) else np.full(len(best), np.nan)
    hi = np.quantile(bests, 1 - q, axis=0) if len(bests) else np.full(len(best), np.nan)
    pred = {}
    for t in obj.targets:
        a, b = laws[t].interval(best[None], level)
        pred[t] = (float(laws[t].predict(best[None])[0]), float(a[0]), float(b[0]))
    return Optimum(first.families, best, lo, hi, value if obj.sense == "min" else -value, pred,
                   len(bests) / max(n_boot, 1))


def _optimum_slsqp(laws, obj, first, bounds, level) -> Optimum:
    """Beyond 4 varying families: SLSQP from 8 starts, for the point law and every bootstrap law."""
    fams, var = first.families, first.varying
    cols = [fams.index(f) for f in var]
    total = 1 - sum(first.fixed.values())
    base = np.zeros(len(fams))
    for f, v in first.fixed.items():
        base[fams.index(f)] = v

    def full(z):
        s = base.copy()
        s[cols] = z
        return s[None]

    def solve(predict):
        sign = 1 if obj.sense == "min" else -1
        fun = lambda z: sign * sum(w * predict(t, full(z))[0] for t, w in obj.terms.items())
        cons = [{"type": "eq", "fun": lambda z: z.sum() - total}]
        for t, op, b in obj.constraints:
            cons.append({"type": "ineq", "fun": (lambda z, t=t, b=b, op=op:
                                                 (b - predict(t, full(z))[0]) * (1 if op == "<=" else -1))})
        rng, best = np.random.default_rng(0), None
        for _ in range(8):
            r = optimize.minimize(fun, rng.dirichlet(np.ones(len(var))) * total, method="SLSQP",
                                  bounds=[bounds.get(f, (0, 1)) for f in var], constraints=cons)
            if r.success and all(c["fun"](r.x) >= -1e-6 for c in cons[1:]) and (best is None or r.fun < best.fun):
                best = r
        return best

    best = solve(lambda t, s: laws[t].predict(s))
    if best is None:
        raise LawError(f"no mixture within {bounds} satisfies {obj} under the fitted laws.")
    n_boot = min(len(laws[t].boot) for t in obj.targets)
    bests = []
    for i in range(min(n_boot, 100)):
        r = solve(lambda t, s, i=i: _eval(laws[t].form, laws[t].boot[i], laws[t]._x(s)))
        if r is not None:
            bests.append(full(r.x)[0])
    return _result(laws, obj, first, full(best.x)[0], float(best.fun), np.asarray(bests), min(n_boot, 100), level)


def explore(laws: Mapping[str, Law], objective: str | Objective, k: int, avoid=(), min_distance: float = 0.1,
            bounds: Mapping | None = None) -> np.ndarray:
    """k mixtures where the bootstrap laws disagree most about the objective.

    Greedy over the `candidates` grid (step 1/100): the candidate with the
    largest bootstrap standard deviation of the objective's weighted sum,
    then the next at least `min_distance` (Euclidean in shares) from every
    pick and every row of `avoid` (e.g. the fitted points).
    """
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    first = _check_laws(laws, obj)
    bounds = {**{f: (0.0, 1.0) for f in first.varying}, **(bounds or {})}
    grid = candidates(first.families, first.varying, first.fixed, bounds, step=0.01)
    spread = np.nanstd(sum(w * laws[t].predict_boot(grid) for t, w in obj.terms.items()), axis=0)
    taken = [np.asarray(a, float) for a in avoid]
    picks = []
    for i in np.argsort(-spread):
        if len(picks) == k:
            break
        if all(np.linalg.norm(grid[i] - a) >= min_distance for a in taken):
            picks.append(grid[i])
            taken.append(grid[i])
    return np.asarray(picks).reshape(-1, len(first.families))
