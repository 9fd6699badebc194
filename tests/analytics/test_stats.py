"""apps.analytics.stats against numbers computed independently from raw per-subject values.

Every expectation is built from the raw numpy arrays with numpy, scipy and statsmodels
(`np.mean`, `np.var(ddof=1)`, `scipy.stats.ttest_ind(equal_var=False)`, `scipy.stats.t`,
`scipy.stats.norm`, statsmodels' `normal_power` and `multipletests`, `scipy.stats.chisquare`),
never from the module's own sufficient statistics or helpers, and compared to 1e-9 relative.
The reference vectors in reference/ (see its README) are a second check; a missing vector file
fails these tests.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, normal_power

from apps.analytics.stats import (
    Comparison,
    GroupStats,
    MetricResult,
    compare_metric,
    holm_adjust,
    sample_ratio_mismatch,
)

REL = 1e-9
# scipy's ttest_ind (the expectation, not the module) warns on arms of identical values.
IDENTICAL_VALUES_WARNING = pytest.mark.filterwarnings(
    "ignore:Precision loss occurred in moment calculation:RuntimeWarning"
)
REFERENCE = Path(__file__).resolve().parent / "reference" / "ab_vectors.json"

Raw = dict[str, np.ndarray]


@pytest.fixture(autouse=True, scope="module")
def _frozen_heap() -> Iterator[None]:
    """statsmodels' multipletests runs gc.collect() on every call (0.1 s over Django's heap).

    Freezing the objects that exist now makes those collections cheap; numbers are unaffected.
    """
    gc.freeze()
    yield
    gc.unfreeze()


# ---------------------------------------------------------------- independent expectations


def groups_from_sql_like(raw: Raw) -> dict[str, GroupStats]:
    """What a caller gets from SQL count/avg/var_samp, here computed by numpy from raw values."""
    return {
        key: GroupStats.from_sql(
            count=len(values),
            avg=float(np.mean(values)) if len(values) else None,
            var_samp=float(np.var(values, ddof=1)) if len(values) > 1 else None,
        )
        for key, values in raw.items()
    }


def expected_comparison(c: np.ndarray, t: np.ndarray, alpha: float, mde: float) -> dict[str, Any]:
    n_c, n_t = len(c), len(t)
    mean_c = float(np.mean(c)) if n_c else None
    mean_t = float(np.mean(t)) if n_t else None
    var_c = float(np.var(c, ddof=1)) if n_c > 1 else None
    var_t = float(np.var(t, ddof=1)) if n_t > 1 else None
    expected: dict[str, Any] = dict.fromkeys(
        [
            "absolute_difference",
            "absolute_ci",
            "relative_lift",
            "relative_ci",
            "relative_p_value",
            "p_value",
            "power",
            "mde",
        ]
    )
    if mean_c is not None and mean_t is not None:
        expected["absolute_difference"] = mean_t - mean_c
        if mean_c != 0:
            expected["relative_lift"] = (mean_t - mean_c) / abs(mean_c)
    if var_c is None or var_t is None or (var_c == 0 and var_t == 0):
        expected["testable"] = False
        return expected
    assert mean_c is not None and mean_t is not None
    expected["testable"] = True
    welch = scipy_stats.ttest_ind(t, c, equal_var=False)
    expected["p_value"] = float(welch.pvalue)
    interval = welch.confidence_interval(confidence_level=1 - alpha)
    expected["absolute_ci"] = (float(interval.low), float(interval.high))
    if mean_c != 0:
        # API.md: delta-method rse, t quantile and t test on the Welch df
        quantile = scipy_stats.t.ppf(1 - alpha / 2, welch.df)
        lift = (mean_t - mean_c) / abs(mean_c)
        rse = math.sqrt(var_t / (n_t * mean_c**2) + mean_t**2 * var_c / (n_c * mean_c**4))
        expected["relative_ci"] = (lift - quantile * rse, lift + quantile * rse)
        # An rse of 0 (a constant treatment at 0) makes lift/rse infinite: p = 0.
        statistic = abs(lift) / rse if rse > 0 else math.inf
        expected["relative_p_value"] = float(2 * scipy_stats.t.sf(statistic, welch.df))
        # API.md: normal approximation on the Welch standard error
        se = math.sqrt(var_t / n_t + var_c / n_c)
        expected["power"] = float(
            normal_power(effect_size=mde * abs(mean_c), nobs=1, alpha=alpha, sigma=se)
        )
        z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(0.8)
        expected["mde"] = float(z * se / abs(mean_c))
    return expected


def expected_metric(raw: Raw, control: str, alpha: float, mde: float) -> dict[str, dict]:
    expected = {}
    for key, values in raw.items():
        entry: dict[str, Any] = {
            "units": len(values),
            "mean": float(np.mean(values)) if len(values) else None,
            "variance": float(np.var(values, ddof=1)) if len(values) > 1 else None,
        }
        if key != control:
            entry.update(expected_comparison(raw[control], values, alpha, mde))
        expected[key] = entry
    treatments = [key for key in raw if key != control]
    tested = [key for key in treatments if expected[key]["p_value"] is not None]
    for key in treatments:
        expected[key]["p_value_adjusted"] = None
    if tested:
        adjusted = multipletests([expected[key]["p_value"] for key in tested], method="holm")[1]
        for key, value in zip(tested, adjusted, strict=True):
            expected[key]["p_value_adjusted"] = float(value)
    for key in treatments:
        p_adjusted = expected[key]["p_value_adjusted"]
        expected[key]["significant"] = p_adjusted is not None and p_adjusted < alpha
    return expected


def close(actual: float | None, expected: float | None, scale: float = 0.0) -> bool:
    """Equal to 1e-9 relative; `scale` is the size of the terms a sum was made of."""
    if actual is None or expected is None:
        return actual is None and expected is None
    return actual == pytest.approx(expected, rel=REL, abs=REL * scale)


def assert_interval(actual, expected, centre) -> None:
    if expected is None:
        assert actual is None
        return
    assert actual is not None
    scale = abs(centre) + abs(expected[1] - expected[0])
    assert close(actual[0], expected[0], scale), (actual, expected)
    assert close(actual[1], expected[1], scale), (actual, expected)


def assert_result(result: MetricResult, expected: dict[str, dict]) -> None:
    assert [entry.variant for entry in result.variants] == list(expected)
    for entry in result.variants:
        want = expected[entry.variant]
        assert entry.units == want["units"]
        assert close(entry.mean, want["mean"]), (entry.variant, entry.mean, want["mean"])
        assert close(entry.variance, want["variance"]), (entry.variant, entry.variance)
        if entry.variant == result.control:
            assert entry.comparison is None
            continue
        got = entry.comparison
        assert got is not None
        scale = abs(want["mean"] or 0.0) + abs(expected[result.control]["mean"] or 0.0)
        assert close(got.absolute_difference, want["absolute_difference"], scale)
        assert close(got.relative_lift, want["relative_lift"]), (got, want)
        assert_interval(got.absolute_ci, want["absolute_ci"], want["absolute_difference"])
        assert_interval(got.relative_ci, want["relative_ci"], want["relative_lift"])
        for field in ("relative_p_value", "p_value", "p_value_adjusted", "power", "mde"):
            assert close(getattr(got, field), want[field]), (field, got, want)
        assert got.significant is want["significant"]
        assert_relative_ci_agrees_with_p_value(got, result.alpha)
        assert (got.warning is None) is (want["testable"] and want["relative_lift"] is not None)


def assert_relative_ci_agrees_with_p_value(got: Comparison, alpha: float) -> None:
    """relative_ci excludes 0 exactly when relative_p_value < alpha.

    Within 1e-9 (relative) of alpha the two sides may round differently; that band is skipped.
    """
    if got.relative_p_value is None:
        assert got.relative_ci is None
        return
    assert got.relative_ci is not None
    if abs(got.relative_p_value / alpha - 1) <= REL:
        return
    excludes_zero = got.relative_ci[0] > 0 or got.relative_ci[1] < 0
    assert excludes_zero is (got.relative_p_value < alpha), (got, alpha)


# ---------------------------------------------------------------- random data (hypothesis)


@st.composite
def experiments(draw: st.DrawFn) -> tuple[Raw, float, float]:
    count = draw(st.integers(min_value=2, max_value=4))
    kind = draw(st.sampled_from(["binomial", "continuous", "counts"]))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    raw: Raw = {}
    for index in range(count):
        size = draw(st.integers(min_value=0, max_value=120))
        if kind == "binomial":
            rate = draw(st.floats(min_value=0.0, max_value=1.0))
            values = (rng.random(size) < rate).astype(np.float64)
        elif kind == "continuous":
            # 0 or a realistic magnitude: mean_c**4 of API.md's formula underflows below 1e-77
            loc = draw(
                st.just(0.0)
                | st.floats(min_value=-100.0, max_value=100.0).filter(lambda x: abs(x) > 1e-6)
            )
            scale = draw(st.sampled_from([0.0, 0.01, 1.0, 25.0]))
            values = rng.normal(loc, scale, size)
        else:
            values = rng.poisson(draw(st.floats(min_value=0.0, max_value=5.0)), size).astype(
                np.float64
            )
        raw["control" if index == 0 else f"treatment-{index}"] = values
    alpha = draw(st.sampled_from([0.01, 0.05, 0.1]))
    mde = draw(st.floats(min_value=0.01, max_value=0.5))
    return raw, alpha, mde


@IDENTICAL_VALUES_WARNING
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(experiments())
def test_compare_metric__random_variants__matches_raw_computation(case):
    # Given per-subject values of 2-4 variants, binomial, continuous or counts
    raw, alpha, mde = case
    # When
    result = compare_metric(groups_from_sql_like(raw), control="control", alpha=alpha, mde=mde)
    # Then
    assert_result(result, expected_metric(raw, "control", alpha, mde))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=0, max_value=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
    offset=st.sampled_from([0.0, -250.0, 1e3, 1e6]),
)
def test_group_stats_merge__chunks__equal_the_whole(seed, size, cuts, offset):
    # Given values of sd 3 split into arbitrary (possibly empty) chunks
    values = offset + np.random.default_rng(seed).normal(0.0, 3.0, size)
    chunks = np.split(values, sorted(min(cut, size) for cut in cuts))
    # When
    merged = GroupStats(units=0)
    for chunk in chunks:
        merged = merged.merge(GroupStats.from_values(chunk))
    combined = GroupStats.combine(GroupStats.from_values(chunk) for chunk in chunks)
    # Then (variances to 1e-9 of the generating variance 9: a sample of 2 may be far smaller)
    for stats in (merged, combined):
        assert stats.units == size
        assert close(stats.sample_mean, float(np.mean(values)) if size else None, abs(offset))
        assert close(stats.variance, float(np.var(values, ddof=1)) if size > 1 else None, 9.0)


# ---------------------------------------------------------------- edge cases


def comparison_of(result: MetricResult, key: str) -> Comparison:
    comparison = result.variant(key).comparison
    assert comparison is not None
    return comparison


def run(raw: Raw, alpha: float = 0.05, mde: float = 0.05) -> MetricResult:
    result = compare_metric(groups_from_sql_like(raw), control="control", alpha=alpha, mde=mde)
    assert_result(result, expected_metric(raw, "control", alpha, mde))
    return result


@pytest.mark.parametrize("units", [0, 1])
def test_compare_metric__treatment_below_two_units__nulls_and_warning(units):
    # Given a treatment with 0 or 1 unit
    raw = {"control": np.array([1.0, 0.0, 2.0, 4.0]), "treatment": np.full(units, 3.0)}
    # When
    result = run(raw)
    # Then
    treatment = result.variant("treatment")
    assert treatment.mean == (3.0 if units else None)
    assert treatment.variance is None
    comparison = comparison_of(result, "treatment")
    assert comparison.absolute_difference == (3.0 - 1.75 if units else None)
    assert (comparison.absolute_ci, comparison.p_value, comparison.p_value_adjusted) == (
        None,
        None,
        None,
    )
    assert (comparison.relative_ci, comparison.relative_p_value) == (None, None)
    assert (comparison.power, comparison.mde, comparison.significant) == (None, None, False)
    assert comparison.warning == "treatment has fewer than 2 units"


def test_compare_metric__control_with_one_unit__nulls_and_warning():
    # Given a control with a single unit
    raw = {"control": np.array([2.0]), "treatment": np.array([1.0, 2.0, 3.0])}
    # When
    result = run(raw)
    # Then
    assert result.variant("control").as_dict() == {
        "variant": "control",
        "units": 1,
        "mean": 2.0,
        "variance": None,
    }
    comparison = comparison_of(result, "treatment")
    assert comparison.p_value is None
    assert comparison.warning == "control has fewer than 2 units"


@IDENTICAL_VALUES_WARNING
def test_compare_metric__zero_variance_in_one_arm__computed_with_df_of_other_arm():
    # Given a control that is constant and a varying treatment
    raw = {"control": np.full(10, 2.0), "treatment": np.array([1.0, 3.0, 4.0, 2.5, 6.0])}
    # When
    result = run(raw)
    # Then the Welch df reduces to n_t - 1
    comparison = comparison_of(result, "treatment")
    assert comparison.warning is None
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(np.var(raw["treatment"], ddof=1) / 5)
    assert comparison.absolute_ci == pytest.approx((3.3 - 2.0 - half, 3.3 - 2.0 + half), rel=REL)


def test_compare_metric__zero_variance_in_both_arms__nulls_and_warning():
    # Given two constant arms
    raw = {"control": np.full(7, 1.0), "treatment": np.full(9, 2.0)}
    # When
    result = run(raw)
    # Then
    comparison = comparison_of(result, "treatment")
    assert (comparison.absolute_difference, comparison.relative_lift) == (1.0, 1.0)
    assert (comparison.absolute_ci, comparison.relative_ci, comparison.p_value) == (
        None,
        None,
        None,
    )
    assert comparison.relative_p_value is None
    assert (comparison.power, comparison.mde, comparison.significant) == (None, None, False)
    assert comparison.warning == "zero variance in both arms"


def test_compare_metric__control_mean_zero__absolute_only_and_warning():
    # Given a binomial metric nobody in the control converted on
    raw = {"control": np.zeros(100), "treatment": np.r_[np.ones(3), np.zeros(97)]}
    # When
    result = run(raw)
    # Then
    comparison = comparison_of(result, "treatment")
    assert comparison.absolute_difference == pytest.approx(0.03, rel=REL)
    assert comparison.absolute_ci is not None and comparison.p_value is not None
    assert (comparison.relative_lift, comparison.relative_ci) == (None, None)
    assert (comparison.relative_p_value, comparison.power, comparison.mde) == (None, None, None)
    assert comparison.warning == "control mean is 0: relative lift, power and mde are undefined"


def test_compare_metric__negative_control_mean__gain_is_positive_lift():
    # Given a metric that is negative in the control (a loss of -10) and raised to -8
    raw = {
        "control": np.tile([-12.0, -10.0, -8.0, -10.0], 5),
        "treatment": np.tile([-9.0, -7.0, -8.0, -8.0], 5),
    }
    # When
    result = run(raw)
    # Then the gain of 2 is a lift of +20% of |mean_c| (dividing by mean_c would say -20%)
    comparison = comparison_of(result, "treatment")
    assert comparison.absolute_difference == 2.0
    assert comparison.relative_lift == pytest.approx(0.2, rel=REL)
    assert comparison.relative_ci is not None and comparison.relative_ci[0] > 0
    assert comparison.relative_p_value is not None and comparison.relative_p_value < 0.05
    assert comparison.mde is not None and comparison.mde > 0


def test_compare_metric__smaller_arm_noisier__power_below_pooled_spread_figure():
    # Given a large quiet control (sd 1, 2000 units) and a small noisy treatment (sd 4, 200)
    rng = np.random.default_rng(7)
    raw = {"control": rng.normal(10.0, 1.0, 2000), "treatment": rng.normal(10.0, 4.0, 200)}
    # When
    result = run(raw, mde=0.05)
    # Then power on the Welch SE (0.41) is below NormalIndPower on the pooled spread
    # s = sqrt((var_c + var_t)/2) that the first version used (0.64), and the mde above it
    comparison = comparison_of(result, "treatment")
    mean_c = float(np.mean(raw["control"]))
    spread = math.sqrt((np.var(raw["control"], ddof=1) + np.var(raw["treatment"], ddof=1)) / 2)
    common = {"nobs1": 2000, "alpha": 0.05, "ratio": 0.1, "alternative": "two-sided"}
    pooled_power = NormalIndPower().power(effect_size=0.05 * abs(mean_c) / spread, **common)
    pooled_mde = NormalIndPower().solve_power(effect_size=None, power=0.8, **common)
    assert comparison.power is not None and comparison.mde is not None
    assert comparison.power < pooled_power - 0.2
    assert comparison.mde > pooled_mde * spread / abs(mean_c)


def test_compare_metric__relative_ci_bound_at_zero__relative_p_value_crosses_alpha():
    # Given a control of mean 10 and sd 2 (50 units) and treatments of the same spread whose
    # mean is bisected to within 1e-9 of where the lower bound of relative_ci crosses 0
    control = GroupStats(units=50, mean=10.0, m2=49 * 4.0)

    def comparison_at(mean_t: float) -> Comparison:
        treatment = GroupStats(units=50, mean=mean_t, m2=49 * 4.0)
        return comparison_of(compare_metric({"c": control, "t": treatment}, control="c"), "t")

    def excludes_zero(mean_t: float) -> bool:
        interval = comparison_at(mean_t).relative_ci
        assert interval is not None
        return interval[0] > 0

    low, high = 10.0, 12.0
    assert not excludes_zero(low) and excludes_zero(high)
    while high - low > 1e-9 * high:
        middle = (low + high) / 2
        low, high = (low, middle) if excludes_zero(middle) else (middle, high)
    # When
    inside, outside = comparison_at(low), comparison_at(high)
    # Then the relative p-value is alpha at the crossing, not below it inside the CI
    assert inside.relative_p_value is not None and outside.relative_p_value is not None
    assert inside.relative_p_value >= 0.05 > outside.relative_p_value
    assert inside.relative_p_value == pytest.approx(0.05, rel=1e-6)


def test_compare_metric__three_variants__holm_across_treatments():
    # Given a control and three treatments with clearly different effects
    rng = np.random.default_rng(5)
    raw = {
        "control": rng.normal(10.0, 2.0, 400),
        "small": rng.normal(10.1, 2.0, 380),
        "large": rng.normal(10.8, 2.0, 410),
        "none": rng.normal(10.0, 2.5, 390),
    }
    # When
    result = run(raw)
    # Then the adjusted p-values are statsmodels' Holm over the three raw Welch p-values
    p_values = [
        scipy_stats.ttest_ind(raw[key], raw["control"], equal_var=False).pvalue
        for key in ("small", "large", "none")
    ]
    reject, adjusted, *_ = multipletests(p_values, alpha=0.05, method="holm")
    comparisons = [comparison_of(result, key) for key in ("small", "large", "none")]
    assert [c.p_value_adjusted for c in comparisons] == pytest.approx(adjusted, rel=REL)
    assert [c.significant for c in comparisons] == list(reject)
    assert any(reject) and not all(reject)


def test_compare_metric__untestable_treatment__left_out_of_holm():
    # Given three treatments, one of them empty
    rng = np.random.default_rng(11)
    raw = {
        "control": rng.normal(5.0, 1.0, 50),
        "a": rng.normal(5.5, 1.0, 50),
        "empty": np.array([]),
        "b": rng.normal(5.2, 1.0, 50),
    }
    # When
    result = run(raw)
    # Then Holm counts two tests
    p_values = [comparison_of(result, key).p_value for key in ("a", "b")]
    adjusted = [comparison_of(result, key).p_value_adjusted for key in ("a", "b")]
    assert adjusted == pytest.approx(multipletests(p_values, method="holm")[1], rel=REL)
    assert comparison_of(result, "empty").p_value_adjusted is None


def test_compare_metric__all_subjects_in_one_variant__nulls_and_srm_mismatch():
    # Given every exposed subject in the control
    raw = {"control": np.random.default_rng(2).random(200), "treatment": np.array([])}
    # When
    result = run(raw)
    srm = sample_ratio_mismatch(
        {"control": 200, "treatment": 0}, {"control": 0.5, "treatment": 0.5}
    )
    # Then
    assert result.variant("treatment").as_dict() == {
        "variant": "treatment",
        "units": 0,
        "mean": None,
        "variance": None,
        "absolute_difference": None,
        "absolute_ci": None,
        "relative_lift": None,
        "relative_ci": None,
        "relative_p_value": None,
        "p_value": None,
        "p_value_adjusted": None,
        "significant": False,
        "power": None,
        "mde": None,
        "warning": "treatment has fewer than 2 units",
    }
    assert srm.p_value == pytest.approx(scipy_stats.chisquare([200, 0], [100, 100]).pvalue, rel=REL)
    assert srm.mismatch is True


def test_compare_metric__values_offset_by_1e9__stable_variance():
    # Given values near 1e9 with a spread of about 1, where Σx² − nμ² loses every digit
    rng = np.random.default_rng(9)
    raw = {"control": 1e9 + rng.normal(0, 1, 5000), "treatment": 1e9 + rng.normal(0.1, 1, 5000)}
    naive = (np.sum(raw["control"] ** 2) - 5000 * np.mean(raw["control"]) ** 2) / 4999
    exact = float(np.var(raw["control"], ddof=1))
    assert abs(naive - exact) / exact > 1e-3
    # When the group statistics come from var_samp (SQL) and from a two-pass batch
    from_sql = compare_metric(groups_from_sql_like(raw), control="control")
    from_values = compare_metric(
        {key: GroupStats.from_values(values) for key, values in raw.items()}, control="control"
    )
    # Then every figure matches the raw computation
    assert_result(from_sql, expected_metric(raw, "control", 0.05, 0.05))
    assert_result(from_values, expected_metric(raw, "control", 0.05, 0.05))


def test_group_stats_merge__values_offset_by_1e9__within_float_resolution_of_the_means():
    # Given values near 1e9 with sd 1, in 7 chunks
    values = 1e9 + np.random.default_rng(4).normal(0, 1, 5000)
    chunks = [GroupStats.from_values(chunk) for chunk in np.array_split(values, 7)]
    # When
    merged = GroupStats(units=0)
    for chunk in chunks:
        merged = merged.merge(chunk)
    combined = GroupStats.combine(chunks)
    # Then the error is bounded by the resolution of a float64 mean near 1e9 (ulp 1.2e-7)
    # against the spread, where the naive formula is off by more than 0.1%
    exact = float(np.var(values, ddof=1))
    assert merged.variance == pytest.approx(exact, rel=1e-6)
    assert combined.variance == pytest.approx(exact, rel=1e-6)


def test_group_stats_from_sql__decimals_and_nulls__converted():
    # Given PostgreSQL's numeric aggregates, and NULLs for small groups
    # When
    groups = [
        GroupStats.from_sql(count=0, avg=None, var_samp=None),
        GroupStats.from_sql(count=1, avg=Decimal("2.5"), var_samp=None),
        GroupStats.from_sql(count=4, avg=Decimal("0.25"), var_samp=Decimal("0.25")),
    ]
    # Then
    assert groups == [
        GroupStats(units=0, mean=0.0, m2=0.0),
        GroupStats(units=1, mean=2.5, m2=0.0),
        GroupStats(units=4, mean=0.25, m2=0.75),
    ]
    assert [(g.sample_mean, g.variance) for g in groups] == [
        (None, None),
        (2.5, None),
        (0.25, 0.25),
    ]


@pytest.mark.parametrize(
    ("units", "mean", "m2"),
    [(-1, 0.0, 0.0), (0, 1.0, 0.0), (1, 1.0, 0.5), (3, math.nan, 0.0), (3, 1.0, -1.0)],
)
def test_group_stats__inconsistent_fields__value_error(units, mean, m2):
    # When / Then
    with pytest.raises(ValueError, match="must|empty group"):
        GroupStats(units=units, mean=mean, m2=m2)


def test_compare_metric__bad_configuration__value_error():
    # Given
    groups = {"control": GroupStats(units=0)}
    with pytest.raises(ValueError, match="alpha"):
        # When / Then
        compare_metric(groups, control="control", alpha=1.0)
    with pytest.raises(ValueError, match="mde"):
        compare_metric(groups, control="control", mde=0.0)
    with pytest.raises(ValueError, match="control"):
        compare_metric(groups, control="missing")


# ---------------------------------------------------------------- sample ratio mismatch


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(st.integers(min_value=0, max_value=100_000), min_size=2, max_size=5),
    weights=st.lists(st.integers(min_value=1, max_value=9), min_size=5, max_size=5),
)
def test_sample_ratio_mismatch__random_counts__equals_scipy_chisquare(units, weights):
    # Given units and weights of 2-5 variants
    keys = [f"v{i}" for i in range(len(units))]
    weight_of = {key: weights[i] / 10 for i, key in enumerate(keys)}
    # When
    srm = sample_ratio_mismatch(dict(zip(keys, units, strict=True)), weight_of)
    # Then
    total = sum(units)
    if total == 0:
        assert (srm.p_value, srm.mismatch) == (None, False)
        return
    shares = np.array(weights[: len(units)], dtype=float)
    expected = scipy_stats.chisquare(units, total * shares / shares.sum()).pvalue
    assert srm.p_value == pytest.approx(expected, rel=REL)
    assert srm.mismatch is bool(expected < 0.001)


def test_sample_ratio_mismatch__weight_zero_variant__excluded_but_reported():
    # Given a weight-0 variant that still got units (tagged predictions)
    units = {"control": 5100, "retired": 700, "treatment": 4900}
    weights = {"control": 0.5, "retired": 0.0, "treatment": 0.5}
    # When
    srm = sample_ratio_mismatch(units, weights)
    # Then
    expected = scipy_stats.chisquare([5100, 4900], [5000, 5000]).pvalue
    assert srm.as_dict() == {
        "p_value": pytest.approx(expected, rel=REL),
        "mismatch": False,
        "units": {"control": 5100, "retired": 700, "treatment": 4900},
    }


@pytest.mark.parametrize(
    ("units", "weights"),
    [
        ({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}),
        ({"a": 10, "b": 3}, {"a": 1.0, "b": 0.0}),
        ({"a": 0, "b": 0, "c": 9}, {"a": 0.5, "b": 0.5, "c": 0.0}),
    ],
)
def test_sample_ratio_mismatch__nothing_to_test__null_p_value(units, weights):
    # Given no units, or fewer than 2 variants of weight > 0
    # When
    srm = sample_ratio_mismatch(units, weights)
    # Then
    assert (srm.p_value, srm.mismatch, dict(srm.units)) == (None, False, units)


def test_sample_ratio_mismatch__units_of_unknown_variant__value_error():
    # When / Then
    with pytest.raises(ValueError, match="without a weight"):
        sample_ratio_mismatch({"a": 1, "ghost": 2}, {"a": 1.0})


# ---------------------------------------------------------------- reference vectors


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    if not REFERENCE.exists():
        pytest.fail(f"reference vectors missing: {REFERENCE}")
    loaded: dict[str, Any] = json.loads(REFERENCE.read_text())
    return loaded


def test_compare_metric__reference_continuous__matches_scipy_and_statsmodels(vectors):
    for case in vectors["continuous"]:
        # Given summaries with n-1 variances
        groups = {
            arm: GroupStats.from_sql(
                count=case["input"][arm]["n"],
                avg=case[f"mean_{arm}"],
                var_samp=case[f"var_{arm}_ddof1"],
            )
            for arm in ("c", "t")
        }
        # When
        comparison = comparison_of(compare_metric(groups, control="c"), "t")
        # Then
        assert comparison.absolute_difference == pytest.approx(case["diff"], rel=REL)
        expected_p = case["scipy_ttest_ind_from_stats"]["p_value"]
        assert comparison.p_value == pytest.approx(expected_p, rel=REL), case["name"]
        welch = case["statsmodels_CompareMeans_welch"]
        scale = abs(case["diff"]) + abs(welch["diff_ci95"][1] - welch["diff_ci95"][0])
        assert comparison.absolute_ci == pytest.approx(welch["diff_ci95"], rel=REL, abs=REL * scale)
        # The vectors divide the lift by mean_c and API.md by |mean_c|: the same numbers, as
        # every control mean here is positive, so the relative figures are used as they are.
        assert case["mean_c"] > 0, case["name"]
        relative = case["relative_ci95_delta_t_welch_dof"]
        scale = abs(case["relative_lift"]) + abs(relative[1] - relative[0])
        assert comparison.relative_lift == pytest.approx(case["relative_lift"], rel=REL)
        assert comparison.relative_ci == pytest.approx(relative, rel=REL, abs=REL * scale)
        expected_relative_p = case["relative_scale_p_value_t_welch_dof"]
        assert comparison.relative_p_value == pytest.approx(expected_relative_p, rel=REL)


def test_compare_metric__reference_two_proportion__matches_difference_and_lift(vectors):
    for case in vectors["two_proportion"]:
        # Given 0/1 per-subject values rebuilt from counts (n-1 variances, not the vectors' p(1-p),
        # so their relative p-values do not apply: run() checks ours against the raw values)
        n_c, x_c, n_t, x_t = (case["input"][k] for k in ("n_c", "x_c", "n_t", "x_t"))
        raw = {
            "control": np.r_[np.ones(x_c), np.zeros(n_c - x_c)],
            "treatment": np.r_[np.ones(x_t), np.zeros(n_t - x_t)],
        }
        # When
        result = run(raw)
        # Then
        comparison = comparison_of(result, "treatment")
        assert result.variant("control").mean == pytest.approx(case["rate_c"], rel=REL)
        assert result.variant("control").variance == pytest.approx(
            x_c * (n_c - x_c) / (n_c * (n_c - 1)), rel=REL
        )
        assert comparison.absolute_difference == pytest.approx(case["diff"], rel=REL, abs=1e-15)
        if case["relative_lift"] is None:
            assert comparison.relative_lift is None
        else:
            assert comparison.relative_lift == pytest.approx(case["relative_lift"], rel=REL)


def test_sample_ratio_mismatch__reference_cases__match_scipy_chisquare(vectors):
    for case in vectors["srm"]["cases"]:
        # Given observed units and configured weights (not always normalised)
        observed, weights = case["input"]["observed"], case["input"]["weights"]
        keys = [f"v{i}" for i in range(len(observed))]
        # When
        srm = sample_ratio_mismatch(
            dict(zip(keys, observed, strict=True)), dict(zip(keys, weights, strict=True))
        )
        # Then (scipy cannot test a zero total: no p-value)
        if "error" in case["scipy_chisquare"]:
            assert (srm.p_value, srm.mismatch) == (None, False), case["name"]
        else:
            assert srm.p_value == pytest.approx(case["scipy_chisquare"]["p_value"], rel=REL)
            assert srm.mismatch is case["growthbook_flag_p_lt_0.001"], case["name"]


def test_holm_adjust__reference_cases__match_statsmodels(vectors):
    for case in vectors["multiple_comparisons"]:
        # When
        adjusted = holm_adjust(case["input_pvalues"])
        # Then
        assert adjusted.tolist() == pytest.approx(case["holm"]["adjusted"], rel=REL), case["name"]


def test_compare_metric__reference_mde_from_n__closed_form_near_solved_effect_size(vectors):
    for case in vectors["power"]["mde_from_n"]:
        # Given arms of n units, mean 1 and variance 1, so se = sqrt(2/n) and mde = the effect
        n = case["input"]["n_per_arm"]
        arm = GroupStats.from_sql(count=n, avg=1.0, var_samp=1.0)
        # When
        comparison = comparison_of(compare_metric({"c": arm, "t": arm}, control="c"), "t")
        # Then the expectation is API.md's closed form, computed here: the vector is
        # statsmodels' NormalIndPower solved for 80% power, which counts the opposite tail and
        # stops its root finder within about 1e-4, so it is only a check to that precision
        z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
        assert comparison.mde == pytest.approx(z * math.sqrt(2 / n), rel=REL), case["name"]
        expected = case["statsmodels_NormalIndPower_effect_size_h"]
        assert comparison.mde == pytest.approx(expected, rel=1e-4), case["name"]


def test_compare_metric__reference_sample_size__power_reaches_80_percent_at_ceil(vectors):
    for case in vectors["power"]["continuous"]:
        # Given arms with the sd of the case (equal variances, where the pooled spread of
        # NormalIndPower and API.md's Welch SE give the same power, so the vector applies as
        # it is), n_t = ratio·n_c and a baseline of 10, so lift = delta / 10
        sd, delta = case["input"]["sd"], case["input"]["delta"]
        ratio = case["input"]["ratio_nt_over_nc"]
        needed = case["statsmodels_NormalIndPower_n_control_ceil"]

        def power_at(n: int, sd: float = sd, delta: float = delta, ratio: float = ratio) -> float:
            control = GroupStats.from_sql(count=n, avg=10.0, var_samp=sd**2)
            treatment = GroupStats.from_sql(count=round(n * ratio), avg=10.0, var_samp=sd**2)
            groups = {"c": control, "t": treatment}
            power = comparison_of(compare_metric(groups, control="c", mde=delta / 10.0), "t").power
            assert power is not None
            return power

        # Then the ceil() of statsmodels' sample size is the first n reaching 80% power
        assert power_at(needed) >= 0.8 > power_at(needed - 1), case["name"]
