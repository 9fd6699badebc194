"""A/B statistics of API.md "Results" over per-variant sufficient statistics (no ORM, no I/O).

Inputs
    `GroupStats(units, mean, m2)` per variant: the number of exposed units n, the mean of
    their per-subject values and M2, the sum of squared deviations from that mean
    (Welford's running quantity, = var_samp·(n−1)). Build it from SQL with
    `GroupStats.from_sql(count=, avg=, var_samp=)` (`avg`/`var_samp` may be NULL below 1/2
    rows), from a numpy batch with `GroupStats.from_values` (two-pass), and fold groups
    together with `merge` (Chan, Golub & LeVeque's pairwise update: δ = mean_b − mean_a,
    mean = mean_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n) or `GroupStats.combine` (the
    same, vectorised over many groups: M2 = Σ M2_i + Σ n_i·(mean_i − mean)²). Σx² − n·mean²
    is never used: it loses every significant digit when the mean is large against the
    spread (values near 1e9). A merge is exact up to the float64 resolution of the group
    means, a relative error of about ulp(mean)/sd in the variance (1e-7 for sd 1 at 1e9),
    whereas `var_samp` over NUMERIC and `from_values` are exact to rounding.

Per variant (`VariantResult`)
    units n; mean (None when n < 1); variance = M2/(n−1), the sample variance (None when
    n < 2). The control has no comparison.

Each treatment t against the control c (`Comparison`), all treatments at once with numpy
    absolute_difference = mean_t − mean_c (None when an arm has no unit).
    Welch's t-test: SE = sqrt(var_t/n_t + var_c/n_c); Welch–Satterthwaite
    df = SE⁴ / ((var_t/n_t)²/(n_t−1) + (var_c/n_c)²/(n_c−1)); q = t.ppf(1 − alpha/2, df).
    absolute_ci = difference ± q·SE.
    p_value = scipy.stats.ttest_ind_from_stats(..., equal_var=False).pvalue.
    relative_lift = (mean_t − mean_c)/|mean_c|, so a gain is positive even when the control
    mean is negative; relative_ci by the delta method, lift ± q·rse with the same q and
    rse = sqrt(var_t/(n_t·mean_c²) + mean_t²·var_c/(n_c·mean_c⁴)) (evaluated as
    sqrt(var_t/n_t + (mean_t/mean_c)²·var_c/n_c)/|mean_c| so that it cannot overflow).
    relative_p_value = 2·t.sf(|lift|/rse, df), the two-sided test of lift/rse on the same df,
    so relative_ci excludes 0 exactly when relative_p_value < alpha (an rse of 0 gives a CI of
    width 0 and a p-value of 0). All three None when mean_c is 0; the absolute figures are
    still given.
    p_value_adjusted: Holm's step-down over the treatments of this metric whose p_value is
    not None (statsmodels `multipletests(method="holm")`); None where p_value is None.
    significant = p_value_adjusted < alpha, False when it is None (the absolute test).
    power and mde on the Welch SE (not a pooled spread sqrt((var_c + var_t)/2), which
    overstates the power when the smaller arm is the noisier one), normal approximation:
    with δ = mde·|mean_c| and z = Φ⁻¹(1 − alpha/2), power = Φ(δ/SE − z) + Φ(−δ/SE − z) at
    the experiment's relative `mde`, and mde = (z + Φ⁻¹(0.8))·SE/|mean_c|, the relative lift
    detected with 80% power (the opposite tail, 1e-6 of power at alpha 0.05, left out).
    |mean_c| keeps the detectable lift a positive size when the baseline is negative. None
    when mean_c or SE is 0.
    A comparison that cannot be tested — fewer than 2 units in an arm, or zero variance in
    both arms — gets None for its CIs, p-values, power and mde, `significant` False and a
    `warning`; it never raises. A zero control mean also sets a `warning`. Any statistic
    that comes out non-finite is None.

Sample ratio mismatch (`sample_ratio_mismatch`)
    Chi-square goodness of fit (scipy.stats.chisquare) of the exposed units of the variants
    with weight > 0 against total·weight/Σweight. Variants of weight 0 are excluded from the
    test (bucketing never assigns them, so their units say nothing about the split) but
    their units are still reported. mismatch when p < 0.001. p_value None (and mismatch
    False) when those variants have no unit at all or fewer than 2 variants have weight > 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import SupportsFloat

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as scipy_stats

DEFAULT_ALPHA = 0.05
DEFAULT_MDE = 0.05
MDE_POWER = 0.8
SRM_THRESHOLD = 0.001

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Sufficient statistics of one group of per-subject values: n, mean, M2."""

    units: int
    mean: float = 0.0
    m2: float = 0.0

    def __post_init__(self) -> None:
        if self.units < 0:
            raise ValueError("units must be >= 0")
        if not (math.isfinite(self.mean) and math.isfinite(self.m2)) or self.m2 < 0:
            raise ValueError("mean and m2 must be finite and m2 >= 0")
        if (self.units == 0 and (self.mean != 0 or self.m2 != 0)) or (
            self.units == 1 and self.m2 != 0
        ):
            raise ValueError("an empty group has mean 0 and m2 0; a single unit has m2 0")

    @classmethod
    def from_sql(
        cls, *, count: int, avg: SupportsFloat | None, var_samp: SupportsFloat | None
    ) -> GroupStats:
        """From SQL `count(*)`, `avg(v)` and `var_samp(v)` of one group (NULLs below 1/2 rows)."""
        if count < 1:
            return cls(units=0)
        mean = float(avg) if avg is not None else 0.0
        if count < 2:
            return cls(units=count, mean=mean)
        variance = float(var_samp) if var_samp is not None else 0.0
        return cls(units=count, mean=mean, m2=max(variance, 0.0) * (count - 1))

    @classmethod
    def from_values(cls, values: ArrayLike) -> GroupStats:
        """From a batch of per-subject values, by the two-pass method."""
        array = np.asarray(values, dtype=np.float64).ravel()
        if array.size == 0:
            return cls(units=0)
        mean = float(np.mean(array))
        m2 = float(np.sum(np.square(array - mean))) if array.size > 1 else 0.0
        return cls(units=int(array.size), mean=mean, m2=m2)

    @classmethod
    def combine(cls, groups: Iterable[GroupStats]) -> GroupStats:
        """All groups folded into one (Chan's update, vectorised over the groups)."""
        rows = [group for group in groups if group.units > 0]
        if not rows:
            return cls(units=0)
        units = np.array([group.units for group in rows], dtype=np.float64)
        means = np.array([group.mean for group in rows], dtype=np.float64)
        m2s = np.array([group.m2 for group in rows], dtype=np.float64)
        total = int(sum(group.units for group in rows))
        mean = float(np.sum(units * means) / total)
        m2 = float(np.sum(m2s) + np.sum(units * np.square(means - mean)))
        return cls(units=total, mean=mean, m2=m2 if total > 1 else 0.0)

    def merge(self, other: GroupStats) -> GroupStats:
        """This group and `other` as one group (Chan et al.'s parallel combination)."""
        if other.units == 0:
            return self
        if self.units == 0:
            return other
        units = self.units + other.units
        delta = other.mean - self.mean
        mean = self.mean + delta * other.units / units
        m2 = self.m2 + other.m2 + delta * delta * self.units * other.units / units
        return GroupStats(units=units, mean=mean, m2=m2)

    @property
    def sample_mean(self) -> float | None:
        """The mean, None without units."""
        return self.mean if self.units >= 1 else None

    @property
    def variance(self) -> float | None:
        """The sample variance M2/(n−1), None below 2 units."""
        return self.m2 / (self.units - 1) if self.units >= 2 else None


@dataclass(frozen=True, slots=True)
class Comparison:
    """One treatment against the control, with the fields and the order of API.md."""

    absolute_difference: float | None
    absolute_ci: tuple[float, float] | None
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    relative_p_value: float | None
    p_value: float | None
    p_value_adjusted: float | None
    significant: bool
    power: float | None
    mde: float | None
    warning: str | None


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One variant's figures for one metric; `comparison` is None for the control."""

    variant: str
    units: int
    mean: float | None
    variance: float | None
    comparison: Comparison | None

    def as_dict(self) -> dict[str, object]:
        """API.md's variant entry: the control without comparison fields, CIs as lists."""
        entry: dict[str, object] = {
            "variant": self.variant,
            "units": self.units,
            "mean": self.mean,
            "variance": self.variance,
        }
        if self.comparison is not None:
            c = self.comparison
            entry.update(
                absolute_difference=c.absolute_difference,
                absolute_ci=list(c.absolute_ci) if c.absolute_ci is not None else None,
                relative_lift=c.relative_lift,
                relative_ci=list(c.relative_ci) if c.relative_ci is not None else None,
                relative_p_value=c.relative_p_value,
                p_value=c.p_value,
                p_value_adjusted=c.p_value_adjusted,
                significant=c.significant,
                power=c.power,
                mde=c.mde,
                warning=c.warning,
            )
        return entry


@dataclass(frozen=True, slots=True)
class MetricResult:
    """Every variant of one metric, in the order the groups were given."""

    control: str
    alpha: float
    mde: float
    variants: tuple[VariantResult, ...]

    def variant(self, key: str) -> VariantResult:
        """The entry of variant `key` (KeyError when absent)."""
        for entry in self.variants:
            if entry.variant == key:
                return entry
        raise KeyError(key)

    def as_dicts(self) -> list[dict[str, object]]:
        """API.md's `variants` list."""
        return [entry.as_dict() for entry in self.variants]


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Sample ratio mismatch: p-value, verdict, and the units of every variant."""

    p_value: float | None
    mismatch: bool
    units: Mapping[str, int]

    def as_dict(self) -> dict[str, object]:
        """API.md's `srm` object."""
        return {"p_value": self.p_value, "mismatch": self.mismatch, "units": dict(self.units)}


def compare_metric(
    groups: Mapping[str, GroupStats],
    *,
    control: str,
    alpha: float = DEFAULT_ALPHA,
    mde: float = DEFAULT_MDE,
) -> MetricResult:
    """Every field of API.md's results for one metric from each variant's `GroupStats`."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if not (math.isfinite(mde) and mde > 0):
        raise ValueError("mde must be a positive number")
    if control not in groups:
        raise ValueError(f"control variant {control!r} has no group")
    treatments = [key for key in groups if key != control]
    comparisons = dict(
        zip(
            treatments,
            _compare(groups[control], [groups[key] for key in treatments], alpha, mde),
            strict=True,
        )
    )
    return MetricResult(
        control=control,
        alpha=alpha,
        mde=mde,
        variants=tuple(
            VariantResult(
                variant=key,
                units=group.units,
                mean=group.sample_mean,
                variance=group.variance,
                comparison=comparisons.get(key),
            )
            for key, group in groups.items()
        ),
    )


def holm_adjust(p_values: ArrayLike) -> FloatArray:
    """Holm's step-down adjusted p-values; NaN entries are not counted and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    if present.size == 0:
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    steps = np.arange(present.size, 0, -1, dtype=np.float64)
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * steps), 1.0)
    return adjusted


def sample_ratio_mismatch(
    units: Mapping[str, int],
    weights: Mapping[str, float],
    *,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    """Chi-square test of the exposed units against the configured weights > 0."""
    unknown = set(units) - set(weights)
    if unknown:
        raise ValueError(f"units of variants without a weight: {sorted(unknown)}")
    if any(not (math.isfinite(weight) and weight >= 0) for weight in weights.values()):
        raise ValueError("weights must be finite and >= 0")
    reported = {key: int(units.get(key, 0)) for key in weights}
    tested = [key for key, weight in weights.items() if weight > 0]
    observed = np.array([reported[key] for key in tested], dtype=np.float64)
    total = float(observed.sum())
    if len(tested) < 2 or total <= 0:
        return SrmResult(p_value=None, mismatch=False, units=reported)
    shares = np.array([weights[key] for key in tested], dtype=np.float64)
    expected = total * shares / shares.sum()
    p_value = _finite(scipy_stats.chisquare(observed, expected).pvalue)
    return SrmResult(
        p_value=p_value,
        mismatch=p_value is not None and p_value < threshold,
        units=reported,
    )


@dataclass(frozen=True, slots=True)
class _Arms:
    """The control as scalars and the treatments as arrays (NaN variance below 2 units)."""

    n_c: float
    mean_c: float
    var_c: float
    n_t: FloatArray
    mean_t: FloatArray
    var_t: FloatArray

    @classmethod
    def of(cls, control: GroupStats, treatments: Sequence[GroupStats]) -> _Arms:
        def nan_if_none(value: float | None) -> float:
            return math.nan if value is None else value

        return cls(
            n_c=float(control.units),
            mean_c=control.mean,
            var_c=nan_if_none(control.variance),
            n_t=np.array([group.units for group in treatments], dtype=np.float64),
            mean_t=np.array([group.mean for group in treatments], dtype=np.float64),
            var_t=np.array([nan_if_none(group.variance) for group in treatments]),
        )

    @property
    def testable(self) -> NDArray[np.bool_]:
        """Both arms with 2 units or more and not both of zero variance."""
        if self.n_c < 2:
            return np.zeros(self.n_t.shape, dtype=bool)
        return (self.n_t >= 2) & ((self.var_t > 0) | (self.var_c > 0))


def _compare(
    control: GroupStats, treatments: Sequence[GroupStats], alpha: float, mde: float
) -> list[Comparison]:
    arms = _Arms.of(control, treatments)
    size = arms.n_t.size
    nan = np.full(size, np.nan)
    has_means = (arms.n_t >= 1) & (arms.n_c >= 1)
    difference = np.where(has_means, arms.mean_t - arms.mean_c, np.nan)
    lift = difference / abs(arms.mean_c) if arms.mean_c != 0 else nan
    tests = _Welch.of(arms, np.flatnonzero(arms.testable), alpha, mde)
    adjusted = holm_adjust(tests.p_value)
    return [
        Comparison(
            absolute_difference=_finite(difference[i]),
            absolute_ci=_interval(difference[i], tests.half_width[i]),
            relative_lift=_finite(lift[i]),
            relative_ci=_interval(lift[i], tests.relative_half_width[i]),
            relative_p_value=_finite(tests.relative_p_value[i]),
            p_value=_finite(tests.p_value[i]),
            p_value_adjusted=_finite(adjusted[i]),
            significant=bool(adjusted[i] < alpha),
            power=_finite(tests.power[i]),
            mde=_finite(tests.mde[i]),
            warning=_warning(arms, i),
        )
        for i in range(size)
    ]


@dataclass(frozen=True, slots=True)
class _Welch:
    """Per treatment: CI half-widths, p-values, power and mde (NaN where not testable)."""

    half_width: FloatArray
    relative_half_width: FloatArray
    relative_p_value: FloatArray
    p_value: FloatArray
    power: FloatArray
    mde: FloatArray

    @classmethod
    def of(cls, arms: _Arms, index: NDArray[np.intp], alpha: float, mde: float) -> _Welch:
        """The figures of the treatments at `index` (the testable ones); NaN elsewhere."""
        figures = {field.name: np.full(arms.n_t.size, np.nan) for field in fields(cls)}
        if index.size == 0:
            return cls(**figures)
        n_t, mean_t, var_t = arms.n_t[index], arms.mean_t[index], arms.var_t[index]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            share_c = arms.var_c / arms.n_c
            share_t = var_t / n_t
            standard_error = np.sqrt(share_t + share_c)
            df = (share_t + share_c) ** 2 / (share_t**2 / (n_t - 1) + share_c**2 / (arms.n_c - 1))
            quantile = scipy_stats.t.ppf(1 - alpha / 2, df)
            figures["half_width"][index] = quantile * standard_error
            figures["p_value"][index] = scipy_stats.ttest_ind_from_stats(
                mean_t,
                np.sqrt(var_t),
                n_t,
                arms.mean_c,
                math.sqrt(arms.var_c),
                arms.n_c,
                equal_var=False,
            ).pvalue
            if arms.mean_c != 0:
                baseline = abs(arms.mean_c)
                lift = (mean_t - arms.mean_c) / baseline
                ratio = mean_t / arms.mean_c
                relative_se = np.sqrt(share_t + ratio**2 * share_c) / baseline
                figures["relative_half_width"][index] = quantile * relative_se
                # |lift|/0 is +inf (p = 0): an rse of 0 leaves a CI of width 0 around lift ≠ 0.
                figures["relative_p_value"][index] = 2 * scipy_stats.t.sf(
                    np.abs(lift) / relative_se, df
                )
                figures["power"][index], figures["mde"][index] = _power_and_mde(
                    standard_error, baseline, alpha, mde
                )
        return cls(**figures)


def _power_and_mde(
    standard_error: FloatArray, baseline: float, alpha: float, mde: float
) -> tuple[FloatArray, FloatArray]:
    """Normal power at a relative lift of `mde` and the lift detected with 80% power."""
    z = scipy_stats.norm.ppf(1 - alpha / 2)
    se = np.where(standard_error > 0, standard_error, np.nan)
    shift = mde * baseline / se
    power = scipy_stats.norm.cdf(shift - z) + scipy_stats.norm.cdf(-shift - z)
    detectable = (z + scipy_stats.norm.ppf(MDE_POWER)) * se / baseline
    return np.asarray(power, np.float64), np.asarray(detectable, np.float64)


def _warning(arms: _Arms, i: int) -> str | None:
    problems = [
        f"{arm} has fewer than 2 units"
        for arm, n in (("control", arms.n_c), ("treatment", arms.n_t[i]))
        if n < 2
    ]
    if not problems and arms.var_c == 0 and arms.var_t[i] == 0:
        problems.append("zero variance in both arms")
    if arms.n_c >= 1 and arms.mean_c == 0:
        problems.append("control mean is 0: relative lift, power and mde are undefined")
    return "; ".join(problems) or None


def _interval(centre: float, half_width: float) -> tuple[float, float] | None:
    low, high = _finite(centre - half_width), _finite(centre + half_width)
    return (low, high) if low is not None and high is not None else None


def _finite(value: SupportsFloat) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
