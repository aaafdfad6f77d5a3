"""Mixture laws: a target metric as a function of the mixture's shares.

`fit(shares, values, form)` fits one target (one value per run) to the runs'
share vectors (rows sum to 1) and returns a `Law`:

  exp       L(r) = c + k * exp(sum_j t_j r_j), the data mixing law of Ye et al.
            2024. Identifiability: the shares sum to 1, so adding a constant
            to every t_j is the same as scaling k by exp(constant). The law
            therefore fixes t = 0 for the LAST varying family (the reference,
            `Law.reference`) and fits t_j of the others: parameters c, k and
            one t per varying family but one. Fitted by variable projection
            (for fixed t, c and k are linear least squares), then refined with
            scipy.optimize.least_squares on all parameters.
  linear    L(r) = b0 + sum_j b_j r_j (RegMix-style linear regression; the
            reference family's b is fixed at 0 for the same reason).
  loglinear log L(r) = b0 + sum_j b_j r_j (positive targets only).

Only families whose share varies across the runs enter; a family at a
constant share is part of every run alike and the law says nothing about it
(its share is held at that constant by `optimum`). A fit refuses (LawError)
when fewer than 2 families vary, when the varying shares are collinear, or
when there are fewer distinct mixture points than parameters + 1 (the fit
would interpolate and leave-one-out would be undefined).

Uncertainty: a bootstrap that keeps the mixture points fixed (they are a
design, not a sample: resampling them would drop sweep points and leave the
exp law unidentifiable in most resamples of a 5-point sweep). Where every
point has >= 2 runs (seeds), noise at the pooled seed variance is drawn
around the point means (below); otherwise the residuals of the fit are resampled across runs, rescaled by
sqrt(runs/(runs - parameters)). Every bootstrap law is refitted from the point
estimate; `Law.boot` holds their parameters and all intervals are percentile
intervals over them.

Where the data are close to linear in the shares, the exp law's c and k are
weakly identified (t -> 0 with k -> inf and c -> -inf fits as well): their
intervals then get very wide while the law's predictions stay well determined;
the linear form's LOO says whether the curvature is real.

Leave-one-out (`Law.loo`): each mixture point (all its seeds) is left out in
turn, the law refitted on the rest (which may interpolate), and the left-out
point's mean predicted; `loo` is the root mean square of those errors over
the interior points. A point that holds the lone smallest or largest share of
a family (a vertex of a sweep: 0% or 100% code) is predicted by extrapolation
when left out, where the exp law can run off by orders of magnitude; those
errors are `Law.loo_vertex`, reported apart. The form with the lower `loo`
predicts unseen mixtures inside the sweep better.

Goodness of fit (`Law.fit_p`, `Law.misfit`): where the points have seeds,
the pure-error lack-of-fit F test compares the point means' misses with the
seeds' own scatter (relative to each point's level). A law that fails it
(p < 0.05) is flagged in `codemix law fit` and the report, and `codemix law
propose` refuses it unless forced: a smooth law through a curve of another
shape gives confident optima in the wrong place.

The bootstrap with seeds: the runs' relative scatter around their point
means is pooled over all points (runs - points df); each bootstrap law is
fitted to the point means plus fresh noise at that pooled variance, itself
drawn from its scaled inverse chi-square (so few seeds widen the band as a t
quantile would). Resampling each point's own 2 seeds instead gave 3 distinct
values per point and an optimum interval that held the truth in 62-83% of
simulated sweeps; this holds it in at least 90% (tests/analysis/test_mixture_law.py).

Objectives, the optimum and exploration: codemix/analysis/mixture_optimum.py.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize

from codemix.errors import LawError

FORMS = ("exp", "linear", "loglinear")
LEVEL = 0.95
MISFIT_ALPHA = 0.05


def n_params(form: str, n_varying: int) -> int:
    if form not in FORMS:
        raise LawError(f"unknown law form {form!r}; use one of {FORMS}.")
    return n_varying + (1 if form == "exp" else 0)


# -- the forms ---------------------------------------------------------------
_MAX_EXPONENT = 700.0  # exp(709.8) overflows float64


def _exp(z: np.ndarray) -> np.ndarray:
    """exp with the exponent capped below float64 overflow: a least-squares
    trial step far along t would otherwise give inf (and a RuntimeWarning);
    capped, it is a huge finite residual that the solver steps back from."""
    return np.exp(np.minimum(z, _MAX_EXPONENT))


def _eval(form: str, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The law at x (points, free families: all varying families but the reference)."""
    if form == "exp":
        return p[0] + p[1] * _exp(x @ p[2:])
    z = p[0] + x @ p[1:]
    return _exp(z) if form == "loglinear" else z


def _linear_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.column_stack([np.ones(len(x)), x])
    return np.linalg.lstsq(a, y, rcond=None)[0]


def _exp_given_t(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    a = np.column_stack([np.ones(len(x)), np.exp(x @ t)])
    ck, *_ = np.linalg.lstsq(a, y, rcond=None)
    return np.concatenate([ck, t]), float(np.sum((a @ ck - y) ** 2))


def _fit_params(form: str, x: np.ndarray, y: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    refit = start
    if form == "linear":
        return _linear_fit(x, y)
    if form == "loglinear":
        if np.any(y <= 0):
            raise LawError("the loglinear form needs positive target values.")
        return _linear_fit(x, np.log(y))
    if start is None:  # variable projection: a coarse search over t, c and k solved exactly
        d = x.shape[1]
        grid = np.linspace(-8, 8, 33 if d == 1 else 9 if d <= 3 else 5)
        cands = itertools.product(grid, repeat=d) if d <= 4 else (np.random.default_rng(0).choice(grid, d)
                                                                   for _ in range(600))
        start = min((_exp_given_t(x, y, np.asarray(t, float)) for t in cands), key=lambda r: r[1])[0]

    def jac(p):
        e = _exp(x @ p[2:])
        return np.column_stack([np.ones(len(x)), e, p[1] * e[:, None] * x])

    # A bootstrap refit starts at the point estimate; near-linear data (t -> 0, k -> inf, c -> -inf) would
    # otherwise spend thousands of evaluations drifting along that valley.
    res = optimize.least_squares(lambda p: _eval(form, p, x) - y, start, jac=jac, method="lm",
                                 xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000 if refit is None else 100)
    return res.x


# -- the law -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Law:
    """A fitted law for one target (see the module docstring).

    Attributes:
      form, target: the form and the target's name.
      families: every family of the share vectors, in column order.
      varying: the families whose share varies (the last is the reference).
      fixed: {family: share} of the families held constant.
      params, param_names: the point estimate.
      boot: (resamples, params) bootstrap parameters.
      loo: leave-one-out root mean square error (NaN with < params + 1 points).
      n_runs, n_points: runs and distinct mixture points fitted.
      bootstrap: "seeds" or "residuals" (how `boot` was drawn).
      share_range: {family: (min, max)} over the fitted runs.
      loo_vertex: the same RMSE over the points whose leave-out is an
        extrapolation (reported apart from `loo`, which is over interior points).
      fit_p, fit_test: the lack-of-fit test's p-value and its description
        (NaN p and the reason where it cannot be made); `misfit` is p < 0.05.
    """

    form: str
    target: str
    families: tuple[str, ...]
    varying: tuple[str, ...]
    fixed: Mapping[str, float]
    params: np.ndarray
    param_names: tuple[str, ...]
    boot: np.ndarray
    loo: float
    n_runs: int
    n_points: int
    bootstrap: str
    share_range: Mapping[str, tuple[float, float]]
    loo_vertex: float = float("nan")
    fit_p: float = float("nan")
    fit_test: str = ""

    @property
    def misfit(self) -> bool:
        """The lack-of-fit test rejects the form at 5%: its residuals exceed the seeds' noise."""
        return bool(math.isfinite(self.fit_p) and self.fit_p < MISFIT_ALPHA)

    def fit_summary(self) -> str:
        """One line on the fit: 'fits the noise (p = 0.41)', 'MISFIT: ...', or why it is untested."""
        if not math.isfinite(self.fit_p):
            return self.fit_test
        if self.misfit:
            return (f"MISFIT (p = {self.fit_p:.3g}, {self.fit_test}): its residuals exceed the seeds' noise; "
                    f"its optimum and intervals are not to be trusted")
        return f"consistent with the seeds' noise (p = {self.fit_p:.2f}, {self.fit_test})"

    @property
    def reference(self) -> str:
        return self.varying[-1]

    def _x(self, shares) -> np.ndarray:
        s = np.atleast_2d(np.asarray(shares, dtype=np.float64))
        if s.shape[1] != len(self.families):
            raise LawError(f"shares have {s.shape[1]} columns; the law's families are {list(self.families)}.")
        return s[:, [self.families.index(f) for f in self.varying[:-1]]]

    def predict(self, shares) -> np.ndarray:
        """The law at each row of `shares` (rows over `families`)."""
        return _eval(self.form, self.params, self._x(shares))

    def predict_boot(self, shares) -> np.ndarray:
        """(resamples, rows): every bootstrap law at each row of `shares`."""
        x = self._x(shares)
        return np.stack([_eval(self.form, p, x) for p in self.boot])

    def interval(self, shares, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of the bootstrap laws at each row of `shares`."""
        q = (1 - level) / 2
        b = self.predict_boot(shares)
        return np.nanquantile(b, q, axis=0), np.nanquantile(b, 1 - q, axis=0)

    def param_intervals(self, level: float = LEVEL) -> dict[str, tuple[float, float, float]]:
        """{name: (estimate, low, high)}."""
        q = (1 - level) / 2
        lo, hi = np.nanquantile(self.boot, q, axis=0), np.nanquantile(self.boot, 1 - q, axis=0)
        return {n: (float(p), float(a), float(b)) for n, p, a, b in zip(self.param_names, self.params, lo, hi)}


def _points(shares: np.ndarray) -> np.ndarray:
    """Index of each run's mixture point (identical share vectors, to 1e-6)."""
    _, idx = np.unique(np.round(shares, 6), axis=0, return_inverse=True)
    return idx.ravel()


def fit(shares, values, form: str = "exp", seeds=None, resamples: int = 500, families: Sequence[str] | None = None,
        target: str = "value", rng_seed: int = 0) -> Law:
    """Fit `form` to (runs, families) `shares` and one value per run (see the module docstring).

    `seeds` (one per run) is informational: runs with identical shares are the
    seeds of one mixture point whatever their seed numbers. Raises LawError
    when the runs cannot support the form.
    """
    s = np.asarray(shares, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if s.ndim != 2 or len(s) != len(y):
        raise LawError(f"shares must be (runs, families) with one value per run; got {s.shape} and {y.shape}.")
    fams = tuple(families or [f"f{i}" for i in range(s.shape[1])])
    if len(fams) != s.shape[1]:
        raise LawError(f"{len(fams)} family names for {s.shape[1]} share columns.")
    ok = np.isfinite(y) & np.all(np.isfinite(s), axis=1)
    s, y = s[ok], y[ok]
    if len(s) and np.max(np.abs(s.sum(axis=1) - 1)) > 1e-4:
        raise LawError("every run's shares must sum to 1.")
    spread = s.max(axis=0) - s.min(axis=0) if len(s) else np.zeros(len(fams))
    varying = tuple(f for f, d in zip(fams, spread) if d > 1e-6)
    if len(varying) < 2:
        raise LawError(f"the shares don't vary along enough families to fit a law: varying {list(varying)} "
                       f"of {list(fams)} over {len(s)} run(s); a law needs runs at different mixtures.")
    fixed = {f: float(s[0, i]) for i, f in enumerate(fams) if f not in varying}
    x = s[:, [fams.index(f) for f in varying[:-1]]]
    pts = _points(s)
    n_pts, k = int(pts.max()) + 1, n_params(form, len(varying))
    if n_pts < k + 1:
        raise LawError(f"too few runs for the {form} law: {n_pts} distinct mixture point(s) ({len(s)} runs), "
                       f"the form has {k} parameters over the varying families {list(varying)} and needs at "
                       f"least {k + 1} points.")
    if np.linalg.matrix_rank(np.column_stack([np.ones(len(x)), x]), tol=1e-8) < len(varying):
        raise LawError(f"the shares of {list(varying)} are collinear across the runs; the law cannot tell "
                       f"their effects apart. Add runs that vary them independently.")
    p = _fit_params(form, x, y)
    names = ("c", "k", *(f"t_{f}" for f in varying[:-1])) if form == "exp" else \
        ("b0", *(f"b_{f}" for f in varying[:-1]))
    boot, how = _bootstrap(form, x, y, pts, p, resamples, rng_seed)
    loo, loo_vertex = _loo(form, s[:, [fams.index(f) for f in varying]], x, y, pts, k)
    fit_p, fit_test = _lack_of_fit(form, p, x, y, pts)
    return Law(form, target, fams, varying, fixed, p, names, boot, loo, len(s), n_pts,
               how, {f: (float(s[:, i].min()), float(s[:, i].max())) for i, f in enumerate(fams)},
               loo_vertex, fit_p, fit_test)


def _bootstrap(form, x, y, pts, p, resamples, rng_seed) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(rng_seed)
    counts = np.bincount(pts)
    groups = [np.flatnonzero(pts == g) for g in range(len(counts))]
    by_seeds = counts.min() >= 2
    fitted = _eval(form, p, x)
    resid = (y - fitted) * math.sqrt(len(y) / max(len(y) - len(p), 1))
    out = []
    if by_seeds:
        rel_var, df = _pure_error(y, groups, relative=True)
        means = np.array([y[g].mean() for g in groups])[pts]
    for _ in range(resamples):
        if by_seeds:
            # Seed noise pooled over the points (as a fraction of each point's mean), with its own
            # uncertainty: a scaled inverse chi-square draw of the variance on the pooled df.
            sd = math.sqrt(rel_var * df / rng.chisquare(df)) if rel_var > 0 else 0.0
            yb = means * (1 + sd * rng.standard_normal(len(y)))
        else:
            yb = fitted + rng.choice(resid, len(y))
        try:
            out.append(_fit_params(form, x, yb, None if form != "exp" else p))
        except (LawError, ValueError, np.linalg.LinAlgError):
            out.append(np.full(len(p), np.nan))
    return np.asarray(out).reshape(resamples, len(p)), "seeds" if by_seeds else "residuals"


def _pure_error(y: np.ndarray, groups: Sequence[np.ndarray], relative: bool = False) -> tuple[float, int]:
    """(variance, df) of the runs around their point's mean, pooled over the points with >= 2 runs
    (relative: of y / point mean - 1)."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            m = y[g].mean()
            d = (y[g] - m) / m if relative and m != 0 else y[g] - m
            ss += float(np.sum(d * d))
            df += len(g) - 1
    return (ss / df if df else float("nan")), df


def _lack_of_fit(form: str, p: np.ndarray, x: np.ndarray, y: np.ndarray, pts: np.ndarray) -> tuple[float, str]:
    """The pure-error lack-of-fit F test, on relative deviations (seed noise scales with the level).

    F = [sum_i n_i ((ybar_i - f_i) / f_i)^2 / (points - parameters)] / s^2, s^2 the runs'
    relative variance around their point means on (runs - points) df. Under a law that is
    right, F follows F(points - parameters, runs - points); a large F means the law misses
    the point means by more than their seeds scatter.
    """
    groups = [np.flatnonzero(pts == g) for g in range(int(pts.max()) + 1)]
    pe, df_pe = _pure_error(y, groups, relative=True)
    df_lof = len(groups) - len(p)
    if df_pe == 0:
        return float("nan"), "fit not tested: one run per mixture (no seed noise to test against)"
    if df_lof <= 0:
        return float("nan"), "fit not tested: as many parameters as mixtures"
    fitted = _eval(form, p, np.stack([x[g[0]] for g in groups]))
    means = np.array([y[g].mean() for g in groups])
    lof = float(np.sum([len(g) * ((m - f) / f) ** 2 for g, m, f in zip(groups, means, fitted)])) / df_lof
    if pe <= 0:
        return float("nan"), "fit not tested: the seeds agree exactly (no noise to test against)"
    from scipy import stats

    return float(stats.f.sf(lof / pe, df_lof, df_pe)), f"lack-of-fit F test on {df_lof} and {df_pe} df"


def _extreme_points(shares: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Per point: True when leaving it out makes it an extrapolation (it holds the lone smallest
    or largest share of some varying family among the points)."""
    n = int(pts.max()) + 1
    rep = np.stack([shares[np.flatnonzero(pts == g)[0]] for g in range(n)])
    out = np.zeros(n, bool)
    for j in range(rep.shape[1]):
        col = rep[:, j]
        for target in (col.min(), col.max()):
            hit = np.flatnonzero(np.abs(col - target) < 1e-9)
            if len(hit) == 1:
                out[hit[0]] = True
    return out


def _loo(form, shares, x, y, pts, k) -> tuple[float, float]:
    """(RMSE over interior points, RMSE over extreme points): each point (all its seeds) left out
    in turn and predicted by the law refitted on the rest. A left-out extreme point is predicted
    outside the shares the refit saw, where a law can run off (errors of 1e6 and more were seen
    for the exp form), so the two are kept apart; NaN where the refits can't be made."""
    extreme = _extreme_points(shares, pts)
    errs: list[list[float]] = [[], []]
    for g in range(int(pts.max()) + 1):
        keep = pts != g
        if len(np.unique(pts[keep])) < k:
            return float("nan"), float("nan")
        try:
            p = _fit_params(form, x[keep], y[keep])
        except LawError:
            return float("nan"), float("nan")
        errs[int(extreme[g])].append(float(_eval(form, p, x[pts == g][:1])[0] - y[pts == g].mean()))
    rms = [float(np.sqrt(np.mean(np.square(e)))) if e else float("nan") for e in errs]
    return rms[0], rms[1]
