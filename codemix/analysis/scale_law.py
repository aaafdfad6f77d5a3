"""Laws across scale: a metric as a function of model size N, tokens D and the mixture h.

Per variant (one mixture), the Chinchilla form that OLMo's ladder fits per task
(Bhagia et al. 2024, arXiv 2412.04403):

    L(N, D) = E + A / N^alpha + B / D^beta                       `fit_variant`

Over scale and mixture together, the two laws of Shukor et al. 2025 ("Scaling
laws for optimal data mixtures", arXiv 2507.09404), h the mixture's share
vector over its k domains (sum h_i = 1):

    additive  L(N, D, h) = E + 1 / (sum_i C_i h_i^gamma_i) + A / N^alpha + B / D^beta
    joint     L(N, D, h) = E + 1 / (sum_i C_i h_i^gamma_i) + A_h / N^alpha_h + B_h / D^beta_h,
              A_h = sum_i a_i h_i,  alpha_h = sum_i alpha_i h_i,  B_h = sum_i b_i h_i,  beta_h = sum_i beta_i h_i

(`fit_joint`). In the additive form the mixture term does not interact with N
or D, so the best h is the same at every scale; in the joint form the scale
terms' coefficients and exponents move with h, and the optimum moves with N.
The search tool found the paper's abstract but not its equation text; the
forms above are the paper's as we recall them (additive: its eq. for the
"additive law"; joint: coefficients and exponents linear in h), and the code
does not depend on more than what is written here.

Units: N and D enter relative to a reference (`n0`, `d0`: the geometric means
of the fitted runs' N and D), so A and B are the law's term at the reference
scale: A / (N/n0)^alpha. Positive parameters (A, B, C, a_i, b_i and every
exponent) are fitted on the log scale; E is free.

Fitting: scipy.optimize.least_squares (Levenberg-Marquardt) on absolute
residuals, from several starts (a grid over the exponents, with E, A, B then
solved exactly by linear least squares); the joint form also starts from the
fitted additive law (a_i = A, alpha_i = alpha for every i), so its residual
sum of squares is never worse than the additive law's.

Uncertainty: a bootstrap over runs that keeps the design (the ladder's sizes,
budgets and mixtures) fixed. Where every cell (N, D, h) has >= 2 runs (seeds),
noise at the pooled seed variance is drawn around the cell means, the variance
itself drawn from its scaled inverse chi-square (few seeds widen the band as a
t quantile would); otherwise the fit's residuals are resampled across runs,
rescaled by sqrt(runs / (runs - parameters)). Each bootstrap law is refitted
from the point estimate; intervals are percentiles over them. A held-out set's
own sampling error is common to every run (all runs read the same documents):
it shifts every prediction alike and does not move an optimum or a ranking, so
it is not in these bands (codemix/analysis/decision.py resamples documents).

Which form: `loo_rung` leaves out each model size (all its budgets, mixtures
and seeds), refits on the others and predicts it; leaving out the largest size
is an extrapolation and is reported apart (`top_error`, the back-test). The
form with the lower error over the rungs predicts held-out sizes better.

The optimum (`optimum`): a weighted sum of fitted laws (one per metric, all
lower-is-better after `sense`) minimised over a grid of the simplex within the
shares the runs covered, at a target (N, D), for the point estimate and for
every bootstrap law (the same resample index across metrics: with the same
runs and seed they resample the same runs); its interval is the percentile
interval of the bootstrap optima. `optimum_curve` does it over a range of N
at D = tokens_per_param * N.

Accuracy (`fit_accuracy`, the ladder's second step): acc(L) = b + a /
(1 + exp(k (L - L0))), fitted to runs whose accuracy is above chance (where
the benchmark says nothing, a sigmoid has nothing to fit); predicting accuracy
at a target chains a loss law's bootstrap predictions through the sigmoid's
bootstrap.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize

from codemix.errors import LawError

FORMS = ("additive", "joint")
LEVEL = 0.95
# A target scale outside these is not a language model this codebase could train or describe.
N_RANGE = (1e5, 1e13)    # parameters
D_RANGE = (1e5, 1e15)    # tokens
_EXP_CAP = 50.0          # cap on log-parameters (exp(50) ~ 5e21) so a trial step cannot overflow


def check_scale(n: float, d: float, what: str = "target scale") -> tuple[float, float]:
    """(N, D) as floats, or LawError naming what is wrong with them."""
    try:
        n, d = float(n), float(d)
    except (TypeError, ValueError):
        raise LawError(f"{what} {n!r},{d!r}: write N,D as numbers of parameters and tokens, "
                       f"e.g. 470e6,200e9.") from None
    if not (N_RANGE[0] <= n <= N_RANGE[1]):
        raise LawError(f"{what}: N = {n:.3g} parameters is outside any sensible model size "
                       f"[{N_RANGE[0]:.0e}, {N_RANGE[1]:.0e}]; write N,D as parameters,tokens, e.g. 470e6,200e9.")
    if not (D_RANGE[0] <= d <= D_RANGE[1]):
        raise LawError(f"{what}: D = {d:.3g} tokens is outside any sensible budget "
                       f"[{D_RANGE[0]:.0e}, {D_RANGE[1]:.0e}]; write N,D as parameters,tokens, e.g. 470e6,200e9.")
    return n, d


def parse_scale(text: str) -> tuple[float, float]:
    """'470e6,200e9' (or '470M,200B') -> (4.7e8, 2e11)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2:
        raise LawError(f"target scale {text!r}: write N,D (parameters,tokens), e.g. 470e6,200e9 or 470M,200B.")
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    vals = []
    for p in parts:
        try:
            vals.append(float(p[:-1]) * units[p[-1].upper()] if p and p[-1].upper() in units else float(p))
        except ValueError:
            raise LawError(f"target scale {text!r}: {p!r} is not a number; write N,D, e.g. 470e6,200e9.") from None
    return check_scale(*vals)


# -- the forms ---------------------------------------------------------------
def _e(z):
    return np.exp(np.minimum(z, _EXP_CAP))


def _names(form: str, fams: Sequence[str]) -> tuple[str, ...]:
    if form == "variant":
        return ("E", "A", "alpha", "B", "beta")
    mix = (*(f"C_{f}" for f in fams), *(f"gamma_{f}" for f in fams))
    if form == "additive":
        return ("E", *mix, "A", "alpha", "B", "beta")
    if form == "joint":
        return ("E", *mix, *(f"{p}_{f}" for p in ("a", "alpha", "b", "beta") for f in fams))
    raise LawError(f"unknown scale-law form {form!r}; use one of {FORMS}.")


def _positive(name: str) -> bool:
    return name != "E"


def _eval(form: str, q: np.ndarray, ln: np.ndarray, ld: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The law at log(N/n0), log(D/d0), shares h (runs, k); q holds log-parameters except E."""
    if form == "variant":
        return q[0] + _e(q[1] - _e(q[2]) * ln) + _e(q[3] - _e(q[4]) * ld)
    k = h.shape[1]
    c, g = _e(q[1:1 + k]), _e(q[1 + k:1 + 2 * k])
    mix = 1.0 / np.maximum(np.sum(c * np.where(h > 0, h, 1.0) ** g * (h > 0), axis=1), 1e-150)
    r = q[1 + 2 * k:]
    if form == "additive":
        a, alpha, b, beta = _e(r)
    else:
        a, alpha, b, beta = (h @ _e(r[i * k:(i + 1) * k]) for i in range(4))
    return q[0] + mix + a * _e(-alpha * ln) + b * _e(-beta * ld)


def _jac(form: str, q: np.ndarray, ln: np.ndarray, ld: np.ndarray, h: np.ndarray) -> np.ndarray:
    """d law / d q (runs, params), the derivative of `_eval` (the overflow cap aside)."""
    cols = [np.ones(len(ln))]
    if form == "variant":
        ta, tb = _e(q[1] - _e(q[2]) * ln), _e(q[3] - _e(q[4]) * ld)
        return np.column_stack([*cols, ta, -ta * ln * _e(q[2]), tb, -tb * ld * _e(q[4])])
    k = h.shape[1]
    c, g = _e(q[1:1 + k]), _e(q[1 + k:1 + 2 * k])
    pos = h > 0
    hp = np.where(pos, h, 1.0)
    terms = c * hp ** g * pos
    s2 = np.maximum(np.sum(terms, axis=1, keepdims=True), 1e-150) ** 2
    cols += list((-terms / s2).T) + list((-terms * np.log(hp) * g / s2).T)
    r = q[1 + 2 * k:]
    if form == "additive":
        a, alpha, b, beta = _e(r)
        ea, eb = a * _e(-alpha * ln), b * _e(-beta * ld)
        cols += [ea, -ea * ln * alpha, eb, -eb * ld * beta]
    else:
        pa, pal, pb, pbe = (_e(r[i * k:(i + 1) * k]) for i in range(4))
        ua, ub = _e(-(h @ pal) * ln), _e(-(h @ pbe) * ld)
        ea, eb = (h @ pa) * ua, (h @ pb) * ub
        cols += list((h * pa * ua[:, None]).T) + list((-ea[:, None] * ln[:, None] * h * pal).T)
        cols += list((h * pb * ub[:, None]).T) + list((-eb[:, None] * ld[:, None] * h * pbe).T)
    return np.column_stack(cols)


@dataclasses.dataclass(frozen=True)
class ScaleLaw:
    """A fitted law across scale (see the module docstring).

    Attributes:
      form: "variant", "additive" or "joint"; target: the metric's name.
      families: the mixture's domains (columns of h; empty for "variant").
      params: log-parameters as fitted (E raw); `values()` gives them on their scale.
      param_names: one per parameter.
      boot: (resamples, params) bootstrap log-parameters (NaN rows where a refit failed).
      n0, d0: the reference size and budget N and D are divided by.
      n_runs, n_cells: runs and distinct (N, D, h) cells fitted.
      bootstrap: "seeds" or "residuals"; rmse: root mean square residual of the fit.
      loo: RMSE of leave-one-size-out predictions over the sizes (NaN with < 3 sizes).
      top_error: mean error (predicted - measured) at the largest size when it is left out.
      sizes: the distinct N fitted; share_range: {family: (min, max)}.
    """

    form: str
    target: str
    families: tuple[str, ...]
    params: np.ndarray
    param_names: tuple[str, ...]
    boot: np.ndarray
    n0: float
    d0: float
    n_runs: int
    n_cells: int
    bootstrap: str
    rmse: float
    loo: float = float("nan")
    top_error: float = float("nan")
    sizes: tuple[float, ...] = ()
    share_range: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def _inputs(self, n, d, shares):
        n = np.atleast_1d(np.asarray(n, np.float64))
        d = np.atleast_1d(np.asarray(d, np.float64))
        if self.form == "variant":
            h = np.zeros((max(len(n), len(d)), 0))
        else:
            h = np.atleast_2d(np.asarray(shares, np.float64))
            if h.shape[1] != len(self.families):
                raise LawError(f"shares have {h.shape[1]} columns; the law's families are {list(self.families)}.")
        m = max(len(n), len(d), len(h))
        return (np.broadcast_to(np.log(n / self.n0), m), np.broadcast_to(np.log(d / self.d0), m),
                np.broadcast_to(h, (m, h.shape[1])))

    def predict(self, n, d, shares=None) -> np.ndarray:
        """The law at each (N, D, shares) row (shares over `families`; None for a per-variant law)."""
        return _eval(self.form, self.params, *self._inputs(n, d, shares))

    def predict_boot(self, n, d, shares=None) -> np.ndarray:
        """(resamples, rows): every bootstrap law at each row."""
        x = self._inputs(n, d, shares)
        return np.stack([_eval(self.form, q, *x) for q in self.boot])

    def interval(self, n, d, shares=None, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
        b = self.predict_boot(n, d, shares)
        q = (1 - level) / 2
        return np.nanquantile(b, q, axis=0), np.nanquantile(b, 1 - q, axis=0)

    def values(self, q: np.ndarray | None = None) -> dict[str, float]:
        """{name: value on its own scale} of the point estimate (or of log-parameters q)."""
        q = self.params if q is None else q
        return {n: float(v if not _positive(n) else math.exp(min(v, _EXP_CAP)))
                for n, v in zip(self.param_names, q)}

    def param_intervals(self, level: float = LEVEL) -> dict[str, tuple[float, float, float]]:
        """{name: (estimate, low, high)} on each parameter's own scale."""
        vals = np.array([list(self.values(q).values()) for q in self.boot])
        q = (1 - level) / 2
        lo, hi = np.nanquantile(vals, q, axis=0), np.nanquantile(vals, 1 - q, axis=0)
        return {n: (v, float(a), float(b)) for (n, v), a, b in zip(self.values().items(), lo, hi)}


# -- fitting -----------------------------------------------------------------
def _lin_start(form, ln, ld, h, y, alpha, beta, k):
    """Log-parameters for fixed exponents with E, A, B (and the mixture term at C = 1/spread,
    gamma = 1) from linear least squares; None when A or B come out non-positive."""
    cols = [np.ones(len(y)), np.exp(-alpha * ln), np.exp(-beta * ld)]
    coef, *_ = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)
    e, a, b = coef
    a, b = max(a, 1e-6 * max(np.ptp(y), 1e-9)), max(b, 1e-6 * max(np.ptp(y), 1e-9))
    if form == "variant":
        return np.array([e, math.log(a), math.log(alpha), math.log(b), math.log(beta)])
    # The mixture term starts small (C large): it adds 1/C at most to E.
    c0 = math.log(10.0 / max(np.ptp(y), 1e-6))
    mix = [c0] * k + [0.0] * k
    if form == "additive":
        return np.array([e - math.exp(-c0), *mix, math.log(a), math.log(alpha), math.log(b), math.log(beta)])
    return np.array([e - math.exp(-c0), *mix, *[math.log(a)] * k, *[math.log(alpha)] * k,
                     *[math.log(b)] * k, *[math.log(beta)] * k])


def _solve(form, ln, ld, h, y, start, max_nfev):
    res = optimize.least_squares(lambda q: _eval(form, q, ln, ld, h) - y, start, method="lm",
                                 jac=lambda q: _jac(form, q, ln, ld, h),
                                 xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=max_nfev)
    return res.x, float(np.sum(res.fun ** 2))


def _fit_params(form, ln, ld, h, y, start=None, extra_starts=()):
    k = h.shape[1]
    if start is not None:
        return _solve(form, ln, ld, h, y, start, 100)[0]
    starts = [_lin_start(form, ln, ld, h, y, a, b, k) for a, b in itertools.product((0.2, 0.5, 1.0), repeat=2)]
    starts += list(extra_starts)
    best = min((_solve(form, ln, ld, h, y, s, 2000) for s in starts), key=lambda r: r[1])
    return best[0]


def _cells(ln, ld, h) -> np.ndarray:
    key = np.column_stack([np.round(ln, 6), np.round(ld, 6), np.round(h, 6)])
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


def _bootstrap(form, ln, ld, h, y, cells, q, resamples, rng_seed):
    rng = np.random.default_rng(rng_seed)
    counts = np.bincount(cells)
    fitted = _eval(form, q, ln, ld, h)
    by_seeds = bool(counts.min() >= 2)
    if by_seeds:
        means = np.array([y[cells == c].mean() for c in range(len(counts))])
        ss = float(sum(np.sum((y[cells == c] - means[c]) ** 2) for c in range(len(counts))))
        df = len(y) - len(counts)
        var = ss / df
    resid = (y - fitted) * math.sqrt(len(y) / max(len(y) - len(q), 1))
    out = np.full((resamples, len(q)), np.nan)
    for i in range(resamples):
        if by_seeds:
            sd = math.sqrt(var * df / rng.chisquare(df)) if var > 0 else 0.0
            yb = means[cells] + sd * rng.standard_normal(len(y))
        else:
            yb = fitted + rng.choice(resid, len(y))
        try:
            out[i] = _fit_params(form, ln, ld, h, yb, start=q)
        except (ValueError, np.linalg.LinAlgError):
            pass
    return out, "seeds" if by_seeds else "residuals"


def _prepare(n, d, shares, values, families, form):
    n = np.asarray(n, np.float64).ravel()
    d = np.asarray(d, np.float64).ravel()
    y = np.asarray(values, np.float64).ravel()
    if form == "variant":
        h = np.zeros((len(y), 0))
    else:
        h = np.atleast_2d(np.asarray(shares, np.float64))
        if h.shape != (len(y), len(families)):
            raise LawError(f"shares must be (runs, families) = ({len(y)}, {len(families)}); got {h.shape}.")
    if not (len(n) == len(d) == len(y)):
        raise LawError(f"N, D and values need one entry per run; got {len(n)}, {len(d)} and {len(y)}.")
    ok = np.isfinite(y) & np.isfinite(n) & np.isfinite(d) & np.all(np.isfinite(h), axis=1)
    if np.any(n[ok] <= 0) or np.any(d[ok] <= 0):
        raise LawError("every run needs a positive parameter count N and token budget D.")
    if h.shape[1] and np.max(np.abs(h[ok].sum(axis=1) - 1)) > 1e-4:
        raise LawError("every run's shares must sum to 1.")
    return n[ok], d[ok], h[ok], y[ok]


def _need(form, n, d, y, k) -> int:
    p = len(_names(form, [f"f{i}" for i in range(k)]))
    sizes, budgets = np.unique(n), np.unique(d)
    missing = []
    if len(sizes) < 2:
        missing.append(f"model sizes (has {len(sizes)}: {[f'{s:.3g}' for s in sizes]})")
    if len(budgets) < 2:
        missing.append(f"token budgets (has {len(budgets)}: {[f'{b:.3g}' for b in budgets]})")
    if missing:
        raise LawError("a law in N and D needs at least two " + " and two ".join(missing)
                       + "; add rungs to the ladder (Experiment ladder sizes / tokens_per_param).")
    return p


def fit_variant(n, d, values, resamples: int = 300, target: str = "value", rng_seed: int = 0) -> ScaleLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta for one variant's runs (one value per run)."""
    n, d, h, y = _prepare(n, d, None, values, (), "variant")
    return _fit("variant", n, d, h, y, (), resamples, target, rng_seed)


def fit_joint(n, d, shares, values, form: str = "joint", families: Sequence[str] | None = None,
              resamples: int = 300, target: str = "value", rng_seed: int = 0, loo: bool = True) -> ScaleLaw:
    """Shukor et al.'s additive or joint law over (runs,) N, D and (runs, families) shares."""
    if form not in FORMS:
        raise LawError(f"unknown scale-law form {form!r}; use one of {FORMS}.")
    shares = np.atleast_2d(np.asarray(shares, np.float64))
    fams = tuple(families or [f"f{i}" for i in range(shares.shape[1])])
    n, d, h, y = _prepare(n, d, shares, values, fams, form)
    if len(np.unique(np.round(h, 6), axis=0)) < 2:
        raise LawError(f"the joint law needs runs at two or more mixtures; the runs have one ({list(fams)}).")
    return _fit(form, n, d, h, y, fams, resamples, target, rng_seed, loo)


def _fit(form, n, d, h, y, fams, resamples, target, rng_seed, loo=True) -> ScaleLaw:
    p = _need(form, n, d, y, h.shape[1])
    n0, d0 = float(np.exp(np.mean(np.log(n)))), float(np.exp(np.mean(np.log(d))))
    ln, ld = np.log(n / n0), np.log(d / d0)
    cells = _cells(ln, ld, h)
    if cells.max() + 1 < p + 1:
        raise LawError(f"too few runs for the {form} law of {target}: {cells.max() + 1} distinct (N, D, mixture) "
                       f"cells ({len(y)} runs) for {p} parameters; it needs at least {p + 1}. Add sizes, budgets "
                       f"or mixtures to the ladder.")
    extra = []
    if form == "joint":
        add = _fit_params("additive", ln, ld, h, y)
        k = h.shape[1]
        extra = [np.concatenate([add[:1 + 2 * k], *[np.full(k, v) for v in add[1 + 2 * k:]]])]
    q = _fit_params(form, ln, ld, h, y, extra_starts=extra)
    boot, how = _bootstrap(form, ln, ld, h, y, cells, q, resamples, rng_seed)
    rmse = float(np.sqrt(np.mean((_eval(form, q, ln, ld, h) - y) ** 2)))
    loo_rmse, top = _loo_rung(form, n, ld, ln, h, y, q) if loo else (float("nan"), float("nan"))
    rng_ = {f: (float(h[:, i].min()), float(h[:, i].max())) for i, f in enumerate(fams)}
    return ScaleLaw(form, target, tuple(fams), q, _names(form, fams), boot, n0, d0, len(y), int(cells.max() + 1),
                    how, rmse, loo_rmse, top, tuple(float(s) for s in np.unique(n)), rng_)


def _loo_rung(form, n, ld, ln, h, y, q) -> tuple[float, float]:
    """(RMSE over sizes of the left-out size's cell-mean errors, mean error at the largest size)."""
    sizes = np.unique(n)
    if len(sizes) < 3:
        return float("nan"), float("nan")
    errs, top = [], float("nan")
    for s in sizes:
        out = n == s
        try:
            qs = _fit_params(form, ln[~out], ld[~out], h[~out], y[~out], start=q)
        except (ValueError, np.linalg.LinAlgError):
            return float("nan"), float("nan")
        e = _eval(form, qs, ln[out], ld[out], h[out]) - y[out]
        errs.append(e)
        if s == sizes[-1]:
            top = float(np.mean(e))
    return float(np.sqrt(np.mean(np.concatenate(errs) ** 2))), top


def backtest(law: ScaleLaw, n, d, shares, values, resamples: int = 200, rng_seed: int = 0) -> tuple[ScaleLaw, float]:
    """Refit `law`'s form without its largest size and return (that law, the RMSE of its predictions
    of the largest size's runs). Raises LawError when fewer than two sizes would remain."""
    n, d = np.asarray(n, np.float64), np.asarray(d, np.float64)
    keep = n < np.max(n)
    if len(np.unique(n[keep])) < 2:
        raise LawError(f"the back-test leaves out the top size and needs two sizes below it; the runs have "
                       f"{len(np.unique(n))} size(s).")
    y = np.asarray(values, np.float64)
    if law.form == "variant":
        low = fit_variant(n[keep], d[keep], y[keep], resamples, law.target, rng_seed)
        pred = low.predict(n[~keep], d[~keep])
    else:
        h = np.atleast_2d(np.asarray(shares, np.float64))
        low = fit_joint(n[keep], d[keep], h[keep], y[keep], law.form, law.families, resamples, law.target,
                        rng_seed, loo=False)
        pred = low.predict(n[~keep], d[~keep], h[~keep])
    ok = np.isfinite(y[~keep])
    return low, float(np.sqrt(np.mean((pred[ok] - y[~keep][ok]) ** 2)))


# -- the optimum -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScaleOptimum:
    """The mixture that minimises sum_t w_t * sense_t * L_t(N, D, h) at one (N, D).

    shares, low, high: {family: share} of the point estimate and the bootstrap's percentile interval.
    value: the objective there; boot_shares: (resamples, families) bootstrap optima.
    """

    n: float
    d: float
    families: tuple[str, ...]
    shares: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    value: float
    boot_shares: np.ndarray


def simplex_grid(families: Sequence[str], share_range: Mapping[str, tuple[float, float]],
                 steps: int | None = None) -> np.ndarray:
    """Share vectors on a grid of the simplex within each family's range (rows sum to 1)."""
    k = len(families)
    steps = steps or {1: 1, 2: 400, 3: 60}.get(k, 20)
    if k == 1:
        return np.ones((1, 1))
    lo = np.array([share_range.get(f, (0.0, 1.0))[0] for f in families])
    hi = np.array([share_range.get(f, (0.0, 1.0))[1] for f in families])
    rows = [np.array(c + (steps - sum(c),)) / steps
            for c in itertools.product(range(steps + 1), repeat=k - 1) if sum(c) <= steps]
    g = np.array(rows)
    g = g[np.all((g >= lo - 1e-9) & (g <= hi + 1e-9), axis=1)]
    if not len(g):
        raise LawError(f"no mixture on the grid lies within the share ranges {dict(share_range)}.")
    return g


def optimum(laws: Mapping[str, ScaleLaw], n: float, d: float, weights: Mapping[str, float] | None = None,
            senses: Mapping[str, str] | None = None, level: float = LEVEL, grid: np.ndarray | None = None
            ) -> ScaleOptimum:
    """Minimise sum_t weights[t] * L_t (negated where senses[t] == 'max') over the simplex at (n, d)."""
    n, d = check_scale(n, d)
    if not laws:
        raise LawError("no law to optimise.")
    first = next(iter(laws.values()))
    for t, law in laws.items():
        if law.form == "variant":
            raise LawError(f"{t}: a per-variant law has no mixture to optimise; fit the additive or joint law.")
        if law.families != first.families:
            raise LawError(f"{t}: its families {list(law.families)} differ from {list(first.families)}.")
    weights = dict(weights or {t: 1.0 for t in laws})
    unknown = sorted(set(weights) - set(laws))
    if unknown:
        raise LawError(f"objective names {unknown}, which have no law; laws: {sorted(laws)}.")
    senses = dict(senses or {})
    rng_ = {f: (min(law.share_range[f][0] for law in laws.values()), max(law.share_range[f][1] for law in
                                                                          laws.values())) for f in first.families}
    g = simplex_grid(first.families, rng_) if grid is None else grid
    sign = {t: (-1.0 if senses.get(t) == "max" else 1.0) * w for t, w in weights.items()}
    obj = sum(sign[t] * laws[t].predict(n, d, g) for t in weights)
    nb = min(len(laws[t].boot) for t in weights)
    bobj = sum(sign[t] * laws[t].predict_boot(n, d, g)[:nb] for t in weights)
    bobj = np.where(np.isfinite(bobj), bobj, np.inf)
    ok = np.isfinite(bobj).any(axis=1)
    bshares = np.full((nb, len(first.families)), np.nan)
    bshares[ok] = g[np.argmin(bobj[ok], axis=1)]
    i = int(np.argmin(obj))
    q = (1 - level) / 2
    lo, hi = np.nanquantile(bshares, q, axis=0), np.nanquantile(bshares, 1 - q, axis=0)
    fams = first.families
    return ScaleOptimum(n, d, fams, dict(zip(fams, map(float, g[i]))), dict(zip(fams, map(float, lo))),
                        dict(zip(fams, map(float, hi))), float(obj[i]), bshares)


def optimum_curve(laws: Mapping[str, ScaleLaw], sizes: Sequence[float], tokens_per_param: float,
                  weights: Mapping[str, float] | None = None, senses: Mapping[str, str] | None = None,
                  family: str | None = None, level: float = LEVEL) -> list[tuple[float, float, float, float]]:
    """[(N, optimal share of `family`, low, high)] at D = tokens_per_param * N for each N."""
    out = []
    for n in sizes:
        o = optimum(laws, n, tokens_per_param * n, weights, senses, level)
        f = family or o.families[-1]
        out.append((float(n), o.shares[f], o.low[f], o.high[f]))
    return out


# -- the second step: loss -> accuracy ---------------------------------------
@dataclasses.dataclass(frozen=True)
class Sigmoid:
    """acc(L) = b + a / (1 + exp(k (L - L0))), fitted above chance; boot: (resamples, 4)."""

    params: np.ndarray
    boot: np.ndarray
    chance: float
    n_runs: int
    n_below_chance: int

    @staticmethod
    def _f(p, loss):
        a, b, k, l0 = p
        return b + a / (1 + np.exp(np.clip(k * (np.asarray(loss) - l0), -50, 50)))

    def predict(self, loss) -> np.ndarray:
        return self._f(self.params, loss)

    def predict_chain(self, loss_boot: np.ndarray) -> np.ndarray:
        """Accuracy from a loss law's (resamples, rows) bootstrap predictions, paired with the sigmoid's."""
        m = min(len(loss_boot), len(self.boot))
        return np.stack([self._f(self.boot[i], loss_boot[i]) for i in range(m)])


def fit_accuracy(loss, acc, chance: float, margin: float = 0.02, resamples: int = 300, rng_seed: int = 0) -> Sigmoid:
    """The ladder's second step on runs whose accuracy exceeds chance + margin (LawError with < 5 such runs)."""
    x, y = np.asarray(loss, np.float64), np.asarray(acc, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    above = y > chance + margin
    if above.sum() < 5:
        raise LawError(f"the loss-to-accuracy sigmoid needs >= 5 runs above chance ({chance:.3g} + {margin:.3g}); "
                       f"{int(above.sum())} of {len(y)} are. At this scale the benchmark's accuracy says nothing; "
                       f"use its continuous metric (bits per byte, prob_correct) instead.")
    xs, ys = x[above], y[above]

    def fit(xx, yy, start):
        res = optimize.least_squares(lambda p: Sigmoid._f(p, xx) - yy, start, method="trf",
                                     bounds=([0, chance - 0.5, 1e-3, -np.inf], [1.5, 1.0, 1e3, np.inf]),
                                     max_nfev=2000)
        return res.x

    start = np.array([max(ys.max() - chance, 0.05) * 1.5, chance, 2.0, float(np.median(xs))])
    start[1] = np.clip(start[1], chance - 0.5 + 1e-6, 1 - 1e-6)
    p = fit(xs, ys, start)
    rng = np.random.default_rng(rng_seed)
    boot = np.full((resamples, 4), np.nan)
    for i in range(resamples):
        j = rng.integers(0, len(xs), len(xs))
        try:
            boot[i] = fit(xs[j], ys[j], p)
        except ValueError:
            pass
    return Sigmoid(p, boot, chance, len(y), int((~above).sum()))
