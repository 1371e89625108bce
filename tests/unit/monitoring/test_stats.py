"""The small exact formulas behind the tests: checked against published values and scipy."""

from __future__ import annotations

import math

import pytest

from aibackend.monitoring.stats import (
    chi2_isf,
    chi2_sf,
    ks_pvalue,
    newcombe_interval,
    normal_quantile,
    wilson_interval,
)

Z95 = 1.959963984540054


def test_chi_square_critical_values_match_the_tables() -> None:
    # GIVEN the textbook 5% critical values of chi-square for 1, 2 and 9 degrees of freedom
    # WHEN they are computed by inverting the closed-form survival function
    # THEN they agree to 4 decimals
    assert chi2_isf(0.05, 1) == pytest.approx(3.8415, abs=1e-4)
    assert chi2_isf(0.05, 2) == pytest.approx(5.9915, abs=1e-4)
    assert chi2_isf(0.05, 9) == pytest.approx(16.9190, abs=1e-4)


def test_chi_square_tail_agrees_with_scipy_across_df_and_x() -> None:
    stats = pytest.importorskip("scipy.stats")
    # GIVEN even and odd df, small and huge statistics (deep tail)
    for df in (1, 2, 3, 8, 13, 100, 501):
        for x in (0.5, 3.0, 12.0, 80.0, 700.0):
            # THEN the relative error is below 1e-9
            assert chi2_sf(x, df) == pytest.approx(
                float(stats.chi2.sf(x, df)), rel=1e-9, abs=1e-300
            )


def test_ks_pvalue_is_close_to_scipys_exact_distribution() -> None:
    stats = pytest.importorskip("scipy.stats")
    # GIVEN statistics and sample sizes typical of monitoring windows
    for d, n, m in ((0.05, 1000, 2000), (0.1, 300, 200), (0.03, 5000, 5000), (0.2, 50, 60)):
        ne = round(n * m / (n + m))
        # THEN the asymptotic p-value with Stephens' correction is within 2% (relative)
        assert ks_pvalue(d, n, m) == pytest.approx(float(stats.kstwo.sf(d, ne)), rel=0.02)


def test_wilson_and_newcombe_reproduce_the_published_examples() -> None:
    # GIVEN Newcombe (1998)'s worked examples
    # THEN Wilson 81/263 is 0.2553-0.3662 and method 10 gives 0.0524-0.3339 for 56/70 - 48/80
    lo, hi = wilson_interval(81, 263, Z95)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    d, lo, hi = newcombe_interval(56, 70, 48, 80, Z95)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)
    d, lo, hi = newcombe_interval(9, 10, 3, 10, Z95)
    assert (round(lo, 4), round(hi, 4)) == (0.1705, 0.8090)


def test_wilson_interval_stays_inside_zero_one_at_the_extremes() -> None:
    # GIVEN no successes, all successes, and no trials
    # THEN the interval is a proper sub-interval of [0, 1] (the whole of it without data)
    assert wilson_interval(0, 50, Z95)[0] == 0.0 < wilson_interval(0, 50, Z95)[1] < 0.1
    assert 0.9 < wilson_interval(50, 50, Z95)[0] < wilson_interval(50, 50, Z95)[1] == 1.0
    assert wilson_interval(0, 0, Z95) == (0.0, 1.0)


def test_normal_quantile_inverts_the_normal_cdf() -> None:
    assert normal_quantile(0.975) == pytest.approx(Z95, abs=1e-9)
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-9)
    assert math.isclose(normal_quantile(0.05), -1.6448536, abs_tol=1e-6)
