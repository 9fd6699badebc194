"""Hash version 1 (API.md): PostHog's published vectors, split balance, ramp stickiness.

PostHog publishes, in PostHog/posthog `posthog/test/test_feature_flag.py`
(TestFeatureFlagMatcherConsistency, "common between all libraries doing local evaluation"),
the outcome of its hash for distinct ids "distinct_id_0" … "distinct_id_999": a flag keyed
"simple-flag" at 45% rollout, and a flag keyed "multivariate-flag" at 55% rollout with
variants weighted 50/20/20/5/5. With the flag key as our salt, our inclusion and variant
functions must give the same outcomes; the first 100 and 40 of them are copied below.
"""

from __future__ import annotations

import hashlib

import pytest
from scipy.stats import chisquare

from apps.experiments.bucketing import (
    attribute_text,
    hash_unit,
    is_included,
    matches_targeting,
    variant_index,
)

# PostHog test_simple_flag_consistency, results[0:100] (T = True, F = False).
SIMPLE_FLAG_45 = (
    "FTTFTFFTFT"
    "FTTFTFFFTT"
    "FTFFTFTTFF"
    "FTTTTFFFFF"
    "FTTFTTFFFT"
    "TFFFFTFTFT"
    "FTTFTFTFTT"
    "FFTFFTFTFF"
    "TFFFTTFTTF"
    "TTTTTFTTFF"
)
# PostHog test_multivariate_flag_consistency, results[0:40] (variant name, or None for False).
F, V1, V2, V3, V4 = None, "first-variant", "second-variant", "third-variant", "fourth-variant"
MULTIVARIATE_55 = [
    V2, V2, V1, F, F, V2, V1, F, F, F,
    V1, V3, F, V1, V2, V1, F, F, V4, V1,
    F, V3, F, F, F, V1, V1, V1, V1, V1,
    V1, V3, F, V3, V2, V1, F, V3, F, F,
]  # fmt: skip
MULTIVARIATE_VARIANTS = [V1, V2, V3, V4, "fifth-variant"]
MULTIVARIATE_WEIGHTS = [0.5, 0.2, 0.2, 0.05, 0.05]


def test_hash_unit__definition__first_15_hex_digits_of_sha1_over_0xfffffffffffffff():
    # Given the scheme written out independently with hashlib
    text = "salt.user-1"
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    expected = int(digest[:15], 16) / 0xFFFFFFFFFFFFFFF
    # Then
    assert hash_unit(text) == expected


def test_is_included__posthog_simple_flag_vectors__same_outcomes():
    outcomes = "".join(
        "T" if is_included(salt="simple-flag", subject=f"distinct_id_{i}", coverage=0.45) else "F"
        for i in range(100)
    )
    assert outcomes == SIMPLE_FLAG_45


def test_variant_index__posthog_multivariate_vectors__same_outcomes():
    outcomes: list[str | None] = []
    for i in range(40):
        subject = f"distinct_id_{i}"
        if not is_included(salt="multivariate-flag", subject=subject, coverage=0.55):
            outcomes.append(None)
            continue
        index = variant_index(
            salt="multivariate-flag", subject=subject, weights=MULTIVARIATE_WEIGHTS
        )
        outcomes.append(MULTIVARIATE_VARIANTS[index])
    assert outcomes == MULTIVARIATE_55


def test_variant_index__zero_weight_last__never_chosen_and_falls_back_to_last_positive():
    # Given weights whose cumulative sum stops short of 1 by rounding
    weights = [0.3, 0.7 - 1e-12, 0.0]
    picks = {variant_index(salt="s", subject=f"u{i}", weights=weights) for i in range(5000)}
    assert picks == {0, 1}


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.1, 0.9]])
def test_variant_index__100k_subjects__chi_square_p_above_0_001(weights):
    # Given
    counts = [0] * len(weights)
    for i in range(100_000):
        counts[variant_index(salt="chi-square", subject=f"user-{i}", weights=weights)] += 1
    # When
    result = chisquare(counts, [w * 100_000 for w in weights])
    # Then
    assert result.pvalue > 0.001


def test_coverage_ramp__10_to_50_percent__keeps_variants_and_includes_about_half():
    # Given
    weights = [0.5, 0.5]
    subjects = [f"user-{i}" for i in range(100_000)]
    before = {
        s: variant_index(salt="ramp", subject=s, weights=weights)
        for s in subjects
        if is_included(salt="ramp", subject=s, coverage=0.1)
    }
    # When coverage rises to 50%
    after = {
        s: variant_index(salt="ramp", subject=s, weights=weights)
        for s in subjects
        if is_included(salt="ramp", subject=s, coverage=0.5)
    }
    # Then every included subject stays, in its variant, and about half are included
    assert all(after.get(s) == variant for s, variant in before.items())
    assert 0.09 < len(before) / 100_000 < 0.11
    assert 0.49 < len(after) / 100_000 < 0.51


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"country": "DE", "plan": "pro"}, True),
        ({"country": "FR", "plan": "pro"}, True),
        ({"country": "US", "plan": "pro"}, False),
        ({"plan": "pro"}, False),
        ({"country": "DE", "plan": "free"}, False),
        ({"country": "DE", "plan": "pro", "device": "ios"}, True),
    ],
)
def test_matches_targeting__every_attribute_must_match(attributes, expected):
    targeting = {"country": frozenset({"DE", "FR"}), "plan": frozenset({"pro"})}
    assert matches_targeting(targeting, attributes) is expected


@pytest.mark.parametrize(
    ("value", "text"),
    [("DE", "DE"), (True, "true"), (False, "false"), (3, "3"), (3.0, "3"), (2.5, "2.5")],
)
def test_attribute_text__json_spelling(value, text):
    assert attribute_text(value) == text
