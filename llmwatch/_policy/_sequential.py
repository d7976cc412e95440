"""A two-sample sequential test that stays valid however often it is looked at: the mixture SPRT.

A rollout compares its arms on every call. Re-running a t-test on each call and stopping at the
first p < 0.05 raises false alarms far above 5 % (each look is another chance to be fooled). The
mixture sequential probability ratio test (mSPRT; Robbins 1970, and for A/B tests Johari, Pekelis
and Walsh, "Always valid inference", 2017/2022) gives a likelihood ratio that may be checked after
every observation: with a normal mixture N(0, tau^2) over the effect theta,

    Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 * V * (V + tau^2)))

where ``d`` is the observed difference beyond the bound and ``V`` its variance; rejecting the null
the first time ``Lambda_n >= 1 / alpha`` keeps the chance of a false rejection at most ``alpha``
over the whole, unbounded, sequence of looks. (The normal approximation of the arm means is what
makes it hold, so nothing is decided before each arm has ``min_calls``.)

One-sided, against a bound: "the challenger is worse by more than ``bound``" is decided when the
difference beyond ``bound`` is positive and ``Lambda_n`` crosses ``1 / alpha``; "not worse" (for
promotion) when the difference is below the bound with the same confidence.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

# The mixture's spread, as a multiple of the statistic's own standard deviation at n = 1: large enough
# to detect the effects a guard bounds (tens of percent), not so large that small samples never decide.
TAU_SCALE: Final = 1.0


class Moments:
    """Count, mean and variance of a stream of numbers, updated in O(1) (Welford's method)."""

    __slots__ = ("count", "m2", "mean")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0


class Decision(NamedTuple):
    """One guard's verdict now: ``worse`` / ``not_worse`` (decided) or ``undecided``, with the evidence."""

    verdict: str
    difference: float  # challenger - scale * champion (signed so that positive is worse)
    bound: float
    statistic: float  # log(Lambda_n) of the test that decided (or of the "worse" test when none did)
    threshold: float  # log(1 / alpha)


WORSE: Final = "worse"
NOT_WORSE: Final = "not_worse"
UNDECIDED: Final = "undecided"


def compare(challenger: Moments, champion: Moments, *, bound: float, scale: float = 1.0, alpha: float) -> Decision:
    """Is ``challenger.mean - scale * champion.mean`` above ``bound`` (worse) or below it (not worse)?

    ``scale`` serves ratio guards (cost per call at most 1.2x the champion's: scale 1.2, bound 0)."""
    difference = challenger.mean - scale * champion.mean
    threshold = math.log(1.0 / alpha)
    if challenger.count < 2 or champion.count < 2:
        return Decision(UNDECIDED, difference, bound, 0.0, threshold)
    variance = challenger.variance / challenger.count + scale * scale * champion.variance / champion.count
    # A floor on the variance: two arms with no spread at all (every call the same cost) still decide.
    floor = 1e-12 + 1e-9 * (abs(challenger.mean) + abs(scale * champion.mean)) ** 2
    variance = max(variance, floor)
    unit = challenger.variance + scale * scale * champion.variance
    tau2 = (TAU_SCALE**2) * max(unit, floor)
    worse = _log_lambda(difference - bound, variance, tau2) if difference > bound else 0.0
    if worse >= threshold:
        return Decision(WORSE, difference, bound, worse, threshold)
    better = _log_lambda(bound - difference, variance, tau2) if difference < bound else 0.0
    if better >= threshold:
        return Decision(NOT_WORSE, difference, bound, better, threshold)
    return Decision(UNDECIDED, difference, bound, worse, threshold)


def _log_lambda(excess: float, variance: float, tau2: float) -> float:
    """log of the mSPRT likelihood ratio for an observed excess with this variance."""
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * excess * excess / (2.0 * variance * (variance + tau2))
