"""Small, exact formulas for the distributions the monitoring tests need (no scipy at run time).

Each function names its source. Accuracy is checked against scipy in the unit tests.
"""

from __future__ import annotations

import math

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / _SQRT2)


def normal_quantile(p: float) -> float:
    """The z with P(Z <= z) = p, by bisection on `normal_sf` (|error| < 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 - normal_sf(mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


def _logsumexp(logs: list[float]) -> float:
    top = max(logs)
    return top + math.log(math.fsum(math.exp(v - top) for v in logs))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square with integer `df` degrees of freedom.

    Closed forms for integer df (Abramowitz & Stegun 26.4.4-26.4.5), summed in log space so
    large `x` neither overflows nor loses the tail:
    even df: exp(-x/2) * sum_{i<df/2} (x/2)^i / i!;
    odd df: 2 Q(sqrt x) + 2 phi(sqrt x) * sum_{r=1}^{(df-1)/2} x^(r-1/2) / (1*3*...*(2r-1)).
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if x <= 0.0:
        return 1.0
    half = 0.5 * x
    if df % 2 == 0:
        logs = [i * math.log(half) - math.lgamma(i + 1) - half for i in range(df // 2)]
        return min(1.0, math.exp(_logsumexp(logs)))
    tail = math.erfc(math.sqrt(half))
    if df == 1:
        return tail
    log_phi = -half - _LOG_SQRT_2PI
    logs, log_term = [], 0.5 * math.log(x)  # r = 1: x^(1/2) / 1
    for r in range(1, (df - 1) // 2 + 1):
        if r > 1:
            log_term += math.log(x) - math.log(2 * r - 1)
        logs.append(math.log(2.0) + log_phi + log_term)
    return min(1.0, tail + math.exp(_logsumexp(logs)))


def chi2_isf(p: float, df: int) -> float:
    """The x with P(X > x) = p for chi-square `df` (bisection on `chi2_sf`, relative 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = 0.0, float(df) + 20.0 * math.sqrt(2.0 * df) + 100.0
    while chi2_sf(hi, df) > p:
        hi *= 2.0
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        if chi2_sf(mid, df) > p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    return 0.5 * (lo + hi)


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (the limit law of sqrt(n) * D_n).

    Two series, each used where it converges fast (Numerical Recipes 3rd ed., 6.14.12-13):
    1 - sqrt(2 pi)/lam * sum exp(-(2k-1)^2 pi^2 / (8 lam^2)) below lam = 1.18,
    2 * sum (-1)^(k-1) exp(-2 k^2 lam^2) above.
    """
    if lam <= 0.0:
        return 1.0
    if lam < 1.18:
        y = math.exp(-(math.pi**2) / (8.0 * lam * lam))
        s = sum(y ** ((2 * k - 1) ** 2) for k in range(1, 6))
        return max(0.0, min(1.0, 1.0 - math.sqrt(2.0 * math.pi) / lam * s))
    x = math.exp(-2.0 * lam * lam)
    s = math.fsum((-1.0) ** (k - 1) * x ** (k * k) for k in range(1, 101))
    return max(0.0, min(1.0, 2.0 * s))


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Asymptotic p-value of a two-sample KS statistic `d` for sample sizes `n` and `m`.

    Uses the effective size ne = n m / (n + m) with Stephens' small-sample correction
    lam = (sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) * d (Stephens 1970; Numerical Recipes 14.3.9),
    accurate to a few percent of the p-value from ne ~ 4 upwards.
    """
    if n <= 0 or m <= 0:
        return 1.0
    ne = n * m / (n + m)
    root = math.sqrt(ne)
    return kolmogorov_sf((root + 0.12 + 0.11 / root) * d)


def wilson_interval(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); (0, 1) when n = 0.

    Unlike the Wald interval it stays inside [0, 1] and keeps close to nominal coverage for
    small n and rates near 0 or 1, where fairness metrics often live.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    k1: float, n1: float, k2: float, n2: float, z: float
) -> tuple[float, float, float]:
    """(p1 - p2, lower, upper): Newcombe's hybrid score interval for a difference of two
    independent proportions (Newcombe 1998, method 10), built from the two Wilson intervals.

    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    """
    p1 = k1 / n1 if n1 > 0 else 0.0
    p2 = k2 / n2 if n2 > 0 else 0.0
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, lower), min(1.0, upper)
