"""Drift from profiles: Evidently's test selection, power on the shifts the issue names, false
alarms near the nominal level, and verdicts that do not depend on how deltas were merged."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from aibackend.monitoring.drift import DriftConfig, DriftReport, detect_drift
from aibackend.monitoring.profiles import Profile, ProfileSchema, Window, WindowKey

NUMERIC = ("normal", "lognormal", "uniform", "counts")
CATEGORICAL = ("merchant", "present")
SCHEMA = ProfileSchema(numeric=NUMERIC, categorical=CATEGORICAL)
MERCHANTS = np.array(["grocery", "fuel", "travel", "online", "pharmacy"], dtype=object)
SHARES = np.array([0.4, 0.25, 0.15, 0.15, 0.05])


def _frame(
    n: int,
    seed: int,
    *,
    shift: float = 0.0,
    new_category: float = 0.0,
    missing: float = 0.0,
    shares: np.ndarray = SHARES,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = rng.normal(shift, 1.0, n)
    normal[rng.random(n) < missing] = np.nan
    merchant = MERCHANTS[rng.choice(MERCHANTS.size, n, p=shares)]
    merchant[rng.random(n) < new_category] = "crypto"
    return {
        "normal": normal,
        "lognormal": rng.lognormal(3.0, 0.8, n),
        "uniform": rng.uniform(0, 24, n),
        "counts": rng.poisson(3.0, n).astype(np.float64),
        "merchant": merchant,
        "present": rng.random(n) < 0.6,
    }


def _profile(frame: dict[str, np.ndarray], name: str, schema: ProfileSchema = SCHEMA) -> Profile:
    scores = 1.0 / (1.0 + np.exp(-np.nan_to_num(frame["normal"])))
    return Profile.build(frame, schema, delta_id=name, scores=scores, predicted=scores > 0.8)


@pytest.fixture(scope="module")
def baseline() -> Profile:
    return _profile(_frame(50_000, seed=1), "baseline")


def _drifted(report: DriftReport) -> set[str]:
    return set(report.drifted_features)


def test_same_distribution_is_not_flagged_and_tests_follow_evidentlys_table(
    baseline: Profile,
) -> None:
    # GIVEN a large reference and a window of 2,000 from the same distributions
    report = detect_drift(baseline, _profile(_frame(2_000, seed=2), "w"))
    # THEN nothing drifts, with distances for the large reference
    assert _drifted(report) == set() and not report.dataset_drift
    tests = {f.column: f.test for f in report.features}
    assert tests == {
        **dict.fromkeys(NUMERIC, "wasserstein"),
        **dict.fromkeys(CATEGORICAL, "jensen_shannon"),
    }
    assert [p.column for p in report.prediction] == ["score", "predicted"]
    assert not any(p.drifted for p in report.prediction)
    # AND the JSON form (what alert events carry) states each verdict
    dumped = report.model_dump(mode="json")
    assert {f["column"]: f["drifted"] for f in dumped["features"]} == dict.fromkeys(
        (*NUMERIC, *CATEGORICAL), False
    )


def test_small_reference_uses_ks_chi_square_and_the_z_test_for_binary_columns() -> None:
    # GIVEN a reference of 800 rows (<= 1,000)
    small = _profile(_frame(800, seed=3), "small")
    # WHEN a same-distribution window and a 0.5 sd mean-shifted one are compared with it
    same = detect_drift(small, _profile(_frame(2_000, seed=4), "same"))
    shifted = detect_drift(small, _profile(_frame(2_000, seed=4, shift=0.5), "shift"))
    # THEN the p-value tests are chosen, and only the shifted feature (and score) drift
    tests = {f.column: f.test for f in same.features}
    assert tests == {**dict.fromkeys(NUMERIC, "ks"), "merchant": "chi_square", "present": "z_test"}
    assert _drifted(same) == set()
    assert _drifted(shifted) == {"normal"}
    normal = next(f for f in shifted.features if f.column == "normal")
    assert normal.p_value is not None and normal.p_value < 1e-6
    assert next(p for p in shifted.prediction if p.column == "score").drifted


@pytest.mark.parametrize(
    ("shift", "column"),
    [
        ({"shift": 0.5}, "normal"),
        ({"new_category": 0.10}, "merchant"),
        ({"shares": np.array([0.25, 0.25, 0.2, 0.2, 0.1])}, "merchant"),
        ({"missing": 0.20}, "normal"),
    ],
    ids=["mean-shift-0.5sd", "new-category-10pct", "category-shares", "missing-20pct"],
)
def test_each_shift_is_flagged_in_the_first_shifted_window(
    baseline: Profile, shift: dict[str, object], column: str
) -> None:
    # GIVEN the first window of 2,000 predictions after the shift
    report = detect_drift(baseline, _profile(_frame(2_000, seed=5, **shift), "shifted"))  # type: ignore[arg-type]
    # THEN exactly the shifted feature is flagged
    assert _drifted(report) == {column}


def test_missing_values_are_flagged_by_their_share_not_their_distribution(
    baseline: Profile,
) -> None:
    report = detect_drift(baseline, _profile(_frame(2_000, seed=6, missing=0.2), "m"))
    normal = next(f for f in report.features if f.column == "normal")
    assert normal.null_share_drifted and not normal.distribution_drifted
    assert normal.current_null_share == pytest.approx(0.2, abs=0.03)


def test_dataset_drift_alarms_stay_under_5_percent_over_200_unshifted_windows(
    baseline: Profile,
) -> None:
    # GIVEN 200 windows of 2,000 predictions with no shift
    reports = [
        detect_drift(baseline, _profile(_frame(2_000, seed=100 + i), f"w{i}")) for i in range(200)
    ]
    # THEN at most 5% raise a dataset-drift alert (and few features drift at all)
    assert sum(r.dataset_drift for r in reports) <= 10
    assert np.mean([len(r.drifted_features) for r in reports]) < 0.5


def test_ks_false_positive_rate_is_near_the_nominal_level_when_sketches_are_exact() -> None:
    # GIVEN sketches large enough to be exact (k above the row counts): the plain KS test
    exact = ProfileSchema(numeric=NUMERIC, categorical=CATEGORICAL, k=2_000)
    rejections = {"normal": 0, "merchant": 0}
    runs = 300
    for i in range(runs):
        ref = _profile(_frame(400, seed=10_000 + i), "r", exact)
        cur = _profile(_frame(300, seed=20_000 + i), "c", exact)
        report = detect_drift(ref, cur)
        for f in report.features:
            if f.column in rejections:
                rejections[f.column] += f.distribution_drifted
    # THEN KS and chi-square reject about 5% of same-distribution pairs (binomial 99% band)
    for count in rejections.values():
        assert 0.02 <= count / runs <= 0.09


def test_ks_on_estimation_mode_sketches_is_conservative() -> None:
    # GIVEN default sketches (k = 1000) in estimation mode on both sides
    runs, rejections = 200, 0
    for i in range(runs):
        ref = _profile(_frame(1_000, seed=30_000 + i), "r")
        cur = _profile(_frame(2_000, seed=40_000 + i), "c")
        f = next(f for f in detect_drift(ref, cur).features if f.column == "lognormal")
        assert f.approximation_error > 0
        rejections += f.distribution_drifted
    # THEN subtracting the sketches' rank error keeps false alarms at or below the level
    assert rejections / runs <= 0.05


def test_sketch_statistics_are_within_their_stated_error_of_the_exact_ones(
    baseline: Profile,
) -> None:
    # GIVEN the exact KS and Wasserstein statistics of the raw samples
    ref_raw = _frame(50_000, seed=1)["lognormal"]
    cur_raw = _frame(2_000, seed=7, shift=0.3)["lognormal"]
    grid = np.sort(np.concatenate([ref_raw, cur_raw]))
    fr = np.searchsorted(np.sort(ref_raw), grid, side="right") / ref_raw.size
    fc = np.searchsorted(np.sort(cur_raw), grid, side="right") / cur_raw.size
    exact_ks = float(np.max(np.abs(fr - fc)))
    exact_w = float(np.sum(np.abs(fr - fc)[:-1] * np.diff(grid)) / ref_raw.std())
    cur = _profile(_frame(2_000, seed=7, shift=0.3), "c")
    # WHEN the same statistics come from the sketches
    w = next(f for f in detect_drift(baseline, cur).features if f.column == "lognormal")
    ks = next(
        f
        for f in detect_drift(baseline, cur, DriftConfig(tests={"lognormal": "ks"})).features
        if f.column == "lognormal"
    )
    # THEN each is within its reported approximation error
    assert w.statistic is not None and ks.statistic is not None
    assert abs(w.statistic - exact_w) <= w.approximation_error
    assert abs(ks.statistic - exact_ks) <= ks.approximation_error


def test_psi_uses_a_sample_size_aware_critical_value(baseline: Profile) -> None:
    # GIVEN PSI chosen for a numeric and a categorical column
    cfg = DriftConfig(tests={"lognormal": "psi", "merchant": "psi"})
    small = detect_drift(baseline, _profile(_frame(500, seed=8), "s"), cfg)
    large = detect_drift(baseline, _profile(_frame(5_000, seed=8), "l"), cfg)
    shifted = detect_drift(baseline, _profile(_frame(2_000, seed=8, new_category=0.1), "x"), cfg)

    def col(r: DriftReport, name: str) -> tuple[float, float, bool]:
        f = next(f for f in r.features if f.column == name)
        assert f.test == "psi" and f.statistic is not None and f.threshold is not None
        return f.statistic, f.threshold, f.distribution_drifted

    # THEN the critical value shrinks as the window grows (Yurdakul 2018) and is far below the
    # 0.1 rule of thumb for 2,000 rows; unshifted data passes, a new category fails
    assert col(large, "lognormal")[1] < col(small, "lognormal")[1] < 0.1
    assert not col(small, "lognormal")[2] and not col(large, "merchant")[2]
    assert col(shifted, "merchant")[2]


def test_dataset_drift_follows_the_configured_share(baseline: Profile) -> None:
    # GIVEN a window where 2 of 6 features drift (one shifted, one with a new category)
    cur = _profile(_frame(2_000, seed=9, shift=0.5, new_category=0.1), "c")
    # THEN it is dataset drift at a share of 1/3, not at the default 0.5
    assert not detect_drift(baseline, cur).dataset_drift
    report = detect_drift(baseline, cur, DriftConfig(drift_share=1 / 3))
    assert report.dataset_drift and report.share == pytest.approx(2 / 6)


def test_verdicts_do_not_depend_on_the_order_or_duplication_of_deltas(
    baseline: Profile,
) -> None:
    # GIVEN ten shifted deltas of 200 rows, merged in two orders, one with duplicates
    deltas = [_profile(_frame(200, seed=50 + i, shift=0.5), f"d{i}") for i in range(10)]
    rng = random.Random(3)
    verdicts = []
    for extra in (0, 4):
        order = deltas + rng.sample(deltas, extra)
        rng.shuffle(order)
        w = Window(WindowKey.for_time(datetime(2024, 1, 1, tzinfo=UTC), "hour"))
        w.add_all(order)
        assert w.profile is not None
        verdicts.append(detect_drift(baseline, w.profile))
    # THEN the drifted features are the same and the statistics agree within the sketch error
    assert _drifted(verdicts[0]) == _drifted(verdicts[1]) == {"normal"}
    for a, b in zip(verdicts[0].features, verdicts[1].features, strict=True):
        assert a.statistic is not None and b.statistic is not None
        assert abs(a.statistic - b.statistic) <= max(a.approximation_error, 1e-9) + 1e-9


def test_mismatched_profiles_and_wrong_test_overrides_are_refused(baseline: Profile) -> None:
    other = Profile.build({"x": [1.0, 2.0]}, ProfileSchema(numeric=("x",)), delta_id="o")
    with pytest.raises(ValueError, match="different columns"):
        detect_drift(baseline, other)
    cur = _profile(_frame(100, seed=1), "c")
    with pytest.raises(ValueError, match="'merchant' is categorical: test 'ks'"):
        detect_drift(baseline, cur, DriftConfig(tests={"merchant": "ks"}))
