"""Where a learning curve is heading: can the chain still reach its threshold within its budget?

Pure (standard library only; no I/O). The chain's validation metric per epoch, over all its attempts,
is fitted with a saturating curve

    y(e) = A - B·exp(-e / τ)          (A: the plateau, B ≥ 0, τ > 0: epochs to rise by 1 - 1/e)

which is ``plateau·(1 - e^(-(e - e0)/τ))`` with the offset written as B. For a fixed τ the model
is linear in (A, B), so each τ of a log-spaced grid gets its exact least-squares fit; the best
τ is the fit.

The decision is conservative: a chain is *hopeless* only when even an optimistic bound is below
the threshold at the end of the budget. The bound is the highest prediction at that epoch over
every τ whose fit is statistically as good as the best one (residual sum of squares within
``PROFILE_CHI2`` noise variances of the best: a profile-likelihood region, which takes in the
nearly straight curves of a slow learner), each plus ``Z_FIT`` standard errors of its prediction,
plus ``Z_NOISE`` standard deviations of the epoch-to-epoch noise (the residuals' deviation, raised to
its 95 % upper confidence limit when there are few points) (an epoch can land above the
curve, and a script may stop at the first epoch that reaches the threshold), plus the largest
amount by which an attempt's reported metric exceeded its own last epoch's value (the metric
may be a final evaluation rather than the validation history). Too few points, or a curve that
is still falling, give no verdict (never hopeless).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keeptraining.config.settings import Config
from keeptraining.engine import cost
from keeptraining.output import wording
from keeptraining.state.ledger import FAILED, Attempt, Ledger

MIN_POINTS = 5  # epochs observed before any verdict
MAX_POINTS = 2000  # epochs fitted at most (more are thinned): the fit stays well under a second
MIN_NOISE = 0.002  # the noise floor: a metric is rarely steadier than this from epoch to epoch
PROFILE_CHI2 = 9.0  # fits within 9 sigma² of the best residual are as plausible (3 sigma on one parameter)
Z_FIT = 3.0  # standard errors of a fit's prediction added to it
Z_NOISE = 2.0  # standard deviations of the noise added (one epoch above the curve)
TAU_POINTS = 90  # τ grid: log-spaced
RUNS_Z = -2.0  # fewer runs of residual signs than this z-score: the curve has another shape
LAST_POINTS = 5  # the last epochs checked for a rise above the fitted curve


@dataclass(frozen=True)
class Projection:
    """The fitted curve and what it says at the end of the budget."""

    epochs_seen: int  # the last epoch observed
    at_epochs: int  # the epochs the model can have at the end of the budget
    projected: float  # the best fit's value at ``at_epochs``
    bound: float  # the optimistic upper bound at ``at_epochs``
    plateau: float  # the best fit's A
    tau: float  # the best fit's τ
    noise: float  # the residuals' standard deviation
    points: int  # epochs fitted
    fits: bool = True  # False: the points are not one saturating rise, so there is no bound (never hopeless)

    def hopeless(self, threshold: float) -> bool:
        return self.bound < threshold

    def to_record(self) -> dict[str, float | int]:
        """The ledger's form (a flat object of numbers)."""
        return {
            "epochs_seen": self.epochs_seen,
            "at_epochs": self.at_epochs,
            "projected": round(max(min(self.projected, 1e6), -1e6), 6),
            "bound": round(max(min(self.bound, 1e6), -1e6), 6),
            "plateau": round(max(min(self.plateau, 1e6), -1e6), 6),
            "tau": round(min(self.tau, 1e9), 3),
            "noise": round(self.noise, 6),
            "points": self.points,
            "fits": self.fits,
        }


def _linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float, list[list[float]]] | None:
    """Least squares of y = A + C·x: (A, C, residual sum of squares, (XᵀX)⁻¹); None if degenerate."""
    n = len(xs)
    sx, sy = sum(xs), sum(ys)
    sxx = sum(x * x for x in xs)
    sxy = sum(x * y for x, y in zip(xs, ys, strict=True))
    det = n * sxx - sx * sx
    if det <= 1e-12 * max(1.0, n * sxx):
        return None
    c = (n * sxy - sx * sy) / det
    a = (sy - c * sx) / n
    sse = sum((y - a - c * x) ** 2 for x, y in zip(xs, ys, strict=True))
    inverse = [[sxx / det, -sx / det], [-sx / det, n / det]]
    return a, c, sse, inverse


Fit = tuple[float, float, float, float, list[list[float]]]  # (residual sum of squares, τ, A, B, (XᵀX)⁻¹)


def _solve(es: list[float], ys: list[float], tau: float) -> Fit | None:
    """The least-squares A and B for one τ; None when degenerate or falling (B < 0)."""
    # y = A - B·exp(-e/τ): linear in x = -exp(-(e - e_first)/τ), with C = B·exp(-e_first/τ)
    # (x in [-1, 0): no overflow for a small τ).
    xs = [-math.exp(-(e - es[0]) / tau) for e in es]
    solved = _linear_fit(xs, ys)
    if solved is None or solved[1] < 0:
        return None
    a, c, sse, inverse = solved
    return sse, tau, a, c, inverse


def _refine(es: list[float], ys: list[float], fits: list[Fit]) -> Fit:
    """The best τ between the grid's neighbours of the best one (golden-section search on log τ)."""
    best = min(fits, key=lambda f: f[0])
    taus = sorted(f[1] for f in fits)
    i = taus.index(best[1])
    low, high = math.log(taus[max(i - 1, 0)]), math.log(taus[min(i + 1, len(taus) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        fa, fb = _solve(es, ys, math.exp(a)), _solve(es, ys, math.exp(b))
        if fa is None or fb is None:
            break
        if fa[0] <= fb[0]:
            high = b
        else:
            low = a
    found = _solve(es, ys, math.exp((low + high) / 2))
    return found if found is not None and found[0] < best[0] else best


def _taus(last: float, horizon: float) -> list[float]:
    low, high = 0.3, max(50.0 * max(horizon, last), 10.0)
    ratio = (high / low) ** (1 / (TAU_POINTS - 1))
    return [low * ratio**i for i in range(TAU_POINTS)]


def _noise_factor(dof: int) -> float:
    """sqrt(dof / chi2 quantile at 5 % with ``dof`` degrees of freedom) (Wilson-Hilferty): the residuals'
    standard deviation, from few points, is raised to what it may be at 95 % confidence."""
    h = 2 / (9 * dof)
    quantile = dof * max(1 - h - 1.645 * math.sqrt(h), 0.05) ** 3
    return math.sqrt(dof / quantile)


def fit(curve: Mapping[int, float], at_epochs: int, *, offset: float = 0.0) -> Projection | None:
    """Project ``curve`` (epoch → metric) to ``at_epochs``; None when it cannot say (too few points,
    or a curve that does not rise). ``offset``: the most a reported metric exceeded its epoch's value.

    When the whole curve is not one saturating rise (a plateau, then a second rise), its later half is
    fitted alone: the phase the model is in now; if that does not fit either, there is no bound."""
    points = sorted(
        (int(e), float(v))
        for e, v in curve.items()
        if e >= 1 and isinstance(v, (int, float)) and math.isfinite(v)
    )
    if len(points) > MAX_POINTS:  # a long chain (or a ledger made to be slow): evenly thinned, the last kept
        step = math.ceil(len(points) / MAX_POINTS)
        points = points[::-1][::step][::-1]
    whole = _fit(points, at_epochs, offset)
    if whole is not None and not whole.fits and len(points) >= 2 * MIN_POINTS:
        recent = _fit(points[len(points) // 2 :], at_epochs, offset)
        if recent is not None and recent.fits:
            return recent
    return whole


def _fit(points: list[tuple[int, float]], at_epochs: int, offset: float) -> Projection | None:
    if len(points) < MIN_POINTS:
        return None
    es = [float(e) for e, _ in points]
    ys = [v for _, v in points]
    first, last = es[0], es[-1]
    target = float(max(at_epochs, int(last)))
    n = len(points)
    fits = [f for f in (_solve(es, ys, tau) for tau in _taus(last, target)) if f is not None]
    if not fits:
        return None
    fits.append(_refine(es, ys, fits))
    best_sse, best_tau, best_a, best_c, _ = min(fits, key=lambda f: f[0])
    dof = max(n - 3, 1)
    noise = max(math.sqrt(best_sse / dof) * _noise_factor(dof), MIN_NOISE)
    residuals = [
        y - (best_a - best_c * math.exp(-(e - first) / best_tau)) for e, y in zip(es, ys, strict=True)
    ]
    fits_curve = _fits(es, residuals, _local_noise(ys))
    variance = noise * noise
    bound = -math.inf
    projected = best_a
    for sse, tau, a, c, inverse in fits:
        if sse > best_sse + PROFILE_CHI2 * variance:
            continue
        x = -math.exp(-(target - first) / tau)
        value = a + c * x
        var = variance * (inverse[0][0] + 2 * x * inverse[0][1] + x * x * inverse[1][1])
        bound = max(bound, value + Z_FIT * math.sqrt(max(var, 0.0)))
        if tau == best_tau:
            projected = value
    bound += Z_NOISE * noise + max(offset, 0.0)
    if not fits_curve:  # the curve is not one saturating rise (a plateau, then a second rise): no verdict
        bound = math.inf
    return Projection(
        epochs_seen=int(last),
        at_epochs=int(target),
        projected=projected,
        bound=bound,
        plateau=best_a,
        tau=best_tau,
        noise=noise,
        points=n,
        fits=fits_curve,
    )


def _local_noise(ys: list[float]) -> float:
    """The epoch-to-epoch noise from the second differences of the later half of the points (a smooth
    curve's trend cancels out there; for independent noise Var(Δ²y) = 6 sigma²), whatever the fit."""
    tail = ys[len(ys) // 2 :]
    second = [tail[i + 2] - 2 * tail[i + 1] + tail[i] for i in range(len(tail) - 2)]
    if not second:
        return MIN_NOISE
    return max(math.sqrt(sum(d * d for d in second) / len(second) / 6), MIN_NOISE)


def _fits(es: list[float], residuals: list[float], noise: float) -> bool:
    """Whether the residuals look like noise around the curve, not like a curve of another shape: the
    last points do not rise above the fitted curve (their residuals' slope is within 2 standard errors
    of 0: else the curve is rising again, after a plateau), and, when the residuals are larger than the
    noise, their signs' runs are not too few (Wald-Wolfowitz, z >= RUNS_Z)."""
    k = max(LAST_POINTS, len(residuals) // 4)
    xs, rs = es[-k:], residuals[-k:]
    mean_x, mean_r = sum(xs) / len(xs), sum(rs) / len(rs)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread > 0:
        slope = sum((x - mean_x) * (r - mean_r) for x, r in zip(xs, rs, strict=True)) / spread
        if slope > 2 * noise / math.sqrt(spread):
            return False
    if math.sqrt(sum(r * r for r in residuals) / len(residuals)) <= 1.5 * noise:
        return True  # residuals no larger than the noise: whatever their signs, the curve fits
    signs = [r > 0 for r in residuals if r != 0]
    above, n = sum(signs), len(signs)
    below = n - above
    if above == 0 or below == 0:
        return n < LAST_POINTS  # all on one side: a shape the curve does not have
    runs = 1 + sum(1 for a, b in itertools.pairwise(signs) if a != b)
    mean = 2 * above * below / n + 1
    variance = 2 * above * below * (2 * above * below - n) / (n * n * (n - 1))
    return variance <= 0 or (runs - mean) / math.sqrt(variance) >= RUNS_Z


Run = tuple[int, list[float], float | None, int | None]  # initial epoch, history, metric, epochs reached


def curve_of(runs: Iterable[Run]) -> tuple[dict[int, float], float]:
    """The metric per epoch over a chain's runs, and the offset of reported metrics over their curve.

    Each run is (initial epoch, history, reported metric, epochs reached); a later run's value for an
    epoch replaces an earlier one's (a retrain from scratch covers the same epochs again)."""
    curve: dict[int, float] = {}
    offset = 0.0
    for initial, history, metric, reached in runs:
        for i, value in enumerate(history):
            curve[initial + 1 + i] = float(value)
        end = initial + len(history)
        if metric is not None and history and (reached is None or reached == end):
            offset = max(offset, float(metric) - float(history[-1]))
        elif metric is not None and reached:
            curve.setdefault(reached, float(metric))
    return curve, offset


def describe(projection: Projection, threshold: float, metric: str = "accuracy") -> str:
    """One line: the projection, as the verdict, the summary and the mail show it."""
    sign = "<" if projection.hopeless(threshold) else "≥"
    return (
        f"projected {wording.one_line(metric, 40)} {wording.fmt_metric(projection.projected)} at "
        f"{wording.plural(projection.at_epochs, 'epoch')} (optimistic bound "
        f"{wording.fmt_metric(min(projection.bound, 1.0))} {sign} {wording.fmt_threshold(threshold)}; "
        f"fitted on {projection.points} epochs up to epoch {projection.epochs_seen})"
    )


# --------------------------------------------------------------------------- the chain's projection


def budget_epochs(config: Config, ledger: Ledger) -> int:
    """The most epochs the model can have once the budget is spent: the attempts the epochs rule still
    plans, within ``max_attempts``, ``max_epochs``, ``max_epochs_total`` and ``max_runner_minutes``
    (each further attempt at the minutes the chain's own attempts so far predict)."""
    last = ledger.last
    if last is None:
        return config.epochs
    reached = last.epochs_reached if last.epochs_reached is not None else last.epochs
    planned, attempt = last.epochs, last.attempt
    trained = ledger.total_epochs_trained()
    minutes = cost.minutes_left(config.max_runner_minutes, ledger)
    while attempt < config.max_attempts:
        if config.max_epochs_total and trained >= config.max_epochs_total:
            break
        upcoming = planned + config.epoch_step
        if config.max_epochs:
            upcoming = min(upcoming, config.max_epochs)
        if upcoming <= reached:
            break
        to_train = upcoming - reached if config.resume else upcoming
        if config.max_runner_minutes is not None:
            expected = cost.expected_minutes(ledger, to_train)
            if expected is not None and expected > minutes:
                break
            minutes -= expected or 0.0
        trained += to_train
        planned, reached, attempt = upcoming, upcoming, attempt + 1
    return reached


def of_runs(runs: Iterable[Attempt], at_epochs: int) -> Projection | None:
    """The projection of a model trained by ``runs`` (a chain's attempts, or a search trial's runs)."""
    curve, offset = curve_of(
        (a.initial_epoch, a.history, a.metric, a.epochs_reached) for a in runs if a.outcome != FAILED
    )
    return fit(curve, at_epochs, offset=offset)


def of_chain(config: Config, ledger: Ledger) -> Projection | None:
    """The epochs chain's projection to the end of its budget (None: too little to say)."""
    return of_runs(ledger.attempts, budget_epochs(config, ledger))


def record(projected: Projection | None, threshold: float) -> dict[str, Any]:
    """The ledger's record of a projection (empty when there is none)."""
    if projected is None:
        return {}
    return {**projected.to_record(), "hopeless": projected.hopeless(threshold)}


def stop_reason(config: Config, ledger: Ledger, to_train: int, best: tuple[float, int] | None) -> str | None:
    """The verdict that ends a chain below its threshold before its next attempt, or None to go on:
    the next attempt would pass ``max_runner_minutes`` (it is expected to train ``to_train`` epochs), or
    (``stop_when_hopeless``) the projection's optimistic bound is below the threshold."""
    last = ledger.last
    if last is None:
        return None
    if config.max_runner_minutes is not None:
        expected = cost.expected_minutes(ledger, to_train)
        used = cost.total_minutes(ledger)
        if expected is not None and used + expected > config.max_runner_minutes:
            return wording.exhausted(
                config.metric,
                last.attempt,
                best,
                within=f"within max_runner_minutes {config.max_runner_minutes:g}",
                detail=f"({used:.1f} minutes used; the next attempt would take about {expected:.1f})",
            )
    if config.stop_when_hopeless:
        projected = of_chain(config, ledger)
        if projected is not None and projected.hopeless(config.threshold):
            return wording.hopeless(
                config.metric, last.attempt, best, describe(projected, config.threshold, config.metric)
            )
    return None
