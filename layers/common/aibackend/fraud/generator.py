"""Synthetic card transactions with labelled fraud, for training, tests and the simulator.

numpy only (it ships in the Lambda layer). `generate_transactions` returns columns (a dict of
numpy arrays, one entry per transaction) sorted by time, in the shape `features.matrix` reads.

Fraud comes from several patterns, each overlapping with a kind of legitimate behaviour so the
problem is not separable by one rule:

| pattern            | looks like                                | legitimate look-alike          |
|--------------------|-------------------------------------------|--------------------------------|
| `card_testing`     | tiny online amounts in bursts             | app/transit top-ups in a burst |
| `account_takeover` | far above the card's average, at night    | big planned purchases          |
| `new_card`         | days-old card, gift cards / transfers     | new customers' first purchases |
| `cross_border`     | abroad, travel/electronics, odd hours     | travellers, night-shift cards  |

Columns:

- `transaction_id`, `card_id`: str
- `timestamp`: `datetime64[s]`, the merchant's local wall-clock time; `utc_offset_min` (int)
  is that place's offset from UTC, so the UTC instant is `timestamp - utc_offset_min`. Rows are
  sorted by the UTC instant. `to_records` writes ISO 8601 strings with the offset.
- `hour`: int, the hour of `timestamp` (local time, like `Transaction.timestamp.hour`)
- `amount` (in `currency`), `avg_amount_30d` (float, in `currency`, NaN when unknown)
- `currency`, `merchant_category`, `customer_age_band`, `region`, `fraud_pattern`: str
- `card_age_days`, `txn_count_1h`, `txn_count_24h`: int
- `card_present`, `country_mismatch`: bool; `is_fraud`: int8 (0/1)
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.fraud.currencies import CURRENCY_TO_EUR
from aibackend.fraud.features import CURRENCIES, MERCHANT_CATEGORIES

AGE_BANDS: tuple[str, ...] = ("18-25", "26-35", "36-50", "51-65", "65+")
_AGE_BAND_P = (0.14, 0.25, 0.30, 0.20, 0.11)

#: Region -> (share of cards, UTC offset in minutes, home currencies, their shares).
REGIONS: dict[str, tuple[float, int, tuple[str, ...], tuple[float, ...]]] = {
    "west": (0.22, 0, ("GBP", "EUR"), (0.8, 0.2)),
    "central": (0.24, 60, ("EUR", "CHF", "PLN", "CZK"), (0.62, 0.12, 0.16, 0.10)),
    "north": (0.10, 60, ("SEK", "NOK", "DKK", "EUR"), (0.4, 0.25, 0.2, 0.15)),
    "south": (0.16, 60, ("EUR",), (1.0,)),
    "east": (0.06, 120, ("EUR", "PLN"), (0.7, 0.3)),
    "americas": (0.16, -300, ("USD", "CAD", "MXN", "BRL"), (0.68, 0.12, 0.1, 0.1)),
    "apac": (0.06, 540, ("JPY", "AUD", "INR"), (0.4, 0.35, 0.25)),
}
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)

PATTERNS: tuple[str, ...] = ("card_testing", "account_takeover", "new_card", "cross_border")
_PATTERN_P = (0.3, 0.3, 0.2, 0.2)

#: Card limit: keeps every amount inside the contract's bounds in every currency.
MAX_AMOUNT_EUR = 5_000.0
#: Days of activity the generated rows span.
SPAN_DAYS = 30
DEFAULT_START = datetime(2024, 3, 1, tzinfo=UTC)

# Category index by name, and per-category behaviour of legitimate spending:
# share of transactions, median amount (EUR), log-normal sigma, share card present.
_C = {c: i for i, c in enumerate(MERCHANT_CATEGORIES)}
_LEGIT: dict[str, tuple[float, float, float, float]] = {
    "grocery": (0.23, 35.0, 0.7, 0.93),
    "restaurants": (0.15, 28.0, 0.6, 0.90),
    "fuel": (0.09, 55.0, 0.4, 0.95),
    "transport": (0.08, 12.0, 0.8, 0.60),
    "pharmacy": (0.05, 18.0, 0.7, 0.90),
    "apparel": (0.08, 60.0, 0.7, 0.55),
    "home": (0.06, 70.0, 0.9, 0.55),
    "online_services": (0.09, 15.0, 0.8, 0.02),
    "travel": (0.03, 280.0, 0.9, 0.15),
    "electronics": (0.04, 160.0, 1.0, 0.45),
    "jewelry": (0.01, 300.0, 1.0, 0.70),
    "gaming": (0.04, 18.0, 0.9, 0.05),
    "gift_cards": (0.02, 45.0, 0.6, 0.30),
    "money_transfer": (0.03, 150.0, 1.0, 0.05),
}
_CAT_P = np.array([_LEGIT[c][0] for c in MERCHANT_CATEGORIES])
_CAT_P = _CAT_P / _CAT_P.sum()
_CAT_MEDIAN = np.array([_LEGIT[c][1] for c in MERCHANT_CATEGORIES])
_CAT_SIGMA = np.array([_LEGIT[c][2] for c in MERCHANT_CATEGORIES])
_CAT_PRESENT = np.array([_LEGIT[c][3] for c in MERCHANT_CATEGORIES])

# Hour-of-day profiles (local time): day shoppers and night-shift workers.
_DAY_HOURS = np.concatenate(
    [
        [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 4.5, 5, 5.5, 6.5],  # 00-11
        [7.5, 7, 6.5, 6.5, 7, 7.5, 7.5, 7, 6, 4.5, 3, 1.8],  # 12-23
    ]
)
_NIGHT_HOURS = np.roll(_DAY_HOURS, 11)
_ODD_HOURS = np.array(
    [4, 4.5, 4.5, 4, 3.5, 2.5, 1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 2, 2.5, 3, 3.5]
)

_RATE = np.array([CURRENCY_TO_EUR[c] for c in CURRENCIES])
_CUR = {c: i for i, c in enumerate(CURRENCIES)}
# Currencies a card abroad (or a foreign merchant online) charges in, weighted.
_FOREIGN_CUR = np.array([_CUR[c] for c in ("EUR", "USD", "GBP", "CHF", "JPY", "AUD", "MXN")])
_FOREIGN_P = np.array([0.38, 0.3, 0.12, 0.06, 0.05, 0.05, 0.04])

#: Columns `to_records` writes: the fields of `aibackend.fraud.schema.Transaction`.
RECORD_FIELDS: tuple[str, ...] = (
    "transaction_id",
    "card_id",
    "amount",
    "currency",
    "merchant_category",
    "timestamp",
    "card_age_days",
    "card_present",
    "country_mismatch",
    "txn_count_1h",
    "txn_count_24h",
    "avg_amount_30d",
    "customer_age_band",
    "region",
)
#: Columns `write_csv` writes: the record fields plus the labels.
CSV_FIELDS: tuple[str, ...] = (*RECORD_FIELDS, "is_fraud", "fraud_pattern")


def _pick(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with probabilities `p` (inverse CDF: faster than `choice` on big n)."""
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(p) - 1)


def _cats(names: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([_C[k] for k in names]), np.array(list(names.values()), dtype=np.float64)


def generate_transactions(
    n: int,
    *,
    seed: int,
    fraud_rate: float = 0.01,
    start: datetime | None = None,
    n_cards: int | None = None,
) -> dict[str, np.ndarray]:
    """`n` transactions, about `fraud_rate` of them fraud, sorted by time.

    Local times fall on the `SPAN_DAYS` calendar days from `start`'s UTC date (default
    `DEFAULT_START`). Deterministic for given arguments. `n_cards` defaults to one card per 15
    transactions. See the module docstring for the columns.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= fraud_rate <= 1.0:
        raise ValueError(f"fraud_rate must be in [0, 1], got {fraud_rate}")
    rng = np.random.default_rng(seed)
    start = start or DEFAULT_START
    start_utc = np.datetime64(
        (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None),
        "s",
    )
    m = max(1, n_cards if n_cards is not None else n // 15)

    # --- cards -------------------------------------------------------------------------
    reg_p = np.array([r[0] for r in REGIONS.values()])
    card_region = _pick(rng, reg_p, m)
    card_cur = np.empty(m, dtype=np.int64)
    for r, (_, _, curs, shares) in enumerate(REGIONS.values()):
        sel = np.flatnonzero(card_region == r)
        codes = np.array([_CUR[c] for c in curs])
        card_cur[sel] = codes[_pick(rng, np.array(shares), sel.size)]
    card_band = _pick(rng, np.array(_AGE_BAND_P), m)
    # Card age at `start`: mostly years old, a few percent brand new.
    card_age0 = np.where(
        rng.random(m) < 0.04,
        rng.integers(0, 30, m),
        np.minimum(rng.gamma(1.6, 500.0, m), 7000).astype(np.int64) + 30,
    )
    card_spend = rng.lognormal(0.0, 0.45, m)  # how much this card spends vs the median
    card_night = rng.random(m) < 0.05  # night-shift workers
    card_travel = rng.random(m) < 0.07  # abroad a lot
    card_activity = rng.gamma(2.0, 1.0, m)  # share of the transactions
    card_velocity = rng.gamma(2.5, 0.8, m)  # typical transactions per day

    card = _pick(rng, card_activity, n)
    region = card_region[card]
    offset_min = np.array([r[1] for r in REGIONS.values()], dtype=np.int64)[region]

    # --- legitimate behaviour ----------------------------------------------------------
    cat = _pick(rng, _CAT_P, n)
    night = card_night[card]
    hour = np.where(night, _pick(rng, _NIGHT_HOURS, n), _pick(rng, _DAY_HOURS, n))
    day = rng.integers(0, SPAN_DAYS, n)
    sec_of_hour = rng.integers(0, 3600, n)

    travel = card_travel[card]
    abroad_p = np.where(travel, 0.35, 0.025)
    online = _CAT_PRESENT[cat] < 0.1
    abroad_p = np.where(online, np.maximum(abroad_p, 0.08), abroad_p)
    mismatch = rng.random(n) < abroad_p
    # Travellers buy travel, restaurants and electronics abroad more often.
    trav_cat, trav_p = _cats({"travel": 0.25, "restaurants": 0.3, "electronics": 0.1, "fuel": 0.1})
    retarget = mismatch & travel & (rng.random(n) < 0.5)
    cat = np.where(retarget, trav_cat[_pick(rng, trav_p, n)], cat)
    # ... and, jet-lagged, at odd hours.
    jetlag = mismatch & travel & (rng.random(n) < 0.3)
    hour = np.where(jetlag, _pick(rng, _ODD_HOURS, n), hour)

    # New customers try their card on bigger-ticket, online things too.
    new_cat, new_p = _cats({"electronics": 0.3, "gift_cards": 0.25, "money_transfer": 0.25})
    newbie = (card_age0[card] < 30) & (rng.random(n) < 0.2)
    cat = np.where(newbie, new_cat[_pick(rng, new_p, n)], cat)
    # Bursts (transit taps, app and game top-ups) are small and mostly online.
    burst = rng.random(n) < 0.015
    burst_cat, burst_p = _cats({"transport": 0.4, "online_services": 0.3, "gaming": 0.3})
    cat = np.where(burst, burst_cat[_pick(rng, burst_p, n)], cat)

    present = rng.random(n) < _CAT_PRESENT[cat]
    amount_eur = rng.lognormal(np.log(_CAT_MEDIAN[cat]), _CAT_SIGMA[cat]) * card_spend[card]
    # Big planned purchases: several times the card's usual amount.
    big = rng.random(n) < 0.012
    amount_eur = np.where(big, amount_eur * rng.lognormal(1.3, 0.5, n), amount_eur)
    # The card's 30-day average ticket, EUR, with estimation noise.
    avg_eur = 55.0 * card_spend[card] * rng.lognormal(0.0, 0.3, n)

    card_age = card_age0[card] + day
    vel = card_velocity[card]
    count_24h = rng.poisson(vel)
    count_1h = rng.binomial(count_24h, 0.08)
    count_1h = np.where(burst, count_1h + rng.integers(2, 8, n), count_1h)
    count_24h = np.maximum(count_24h, count_1h)

    # --- fraud -------------------------------------------------------------------------
    legit_hour, legit_1h, legit_24h = hour.copy(), count_1h.copy(), count_24h.copy()
    legit_present = present.copy()
    is_fraud = rng.random(n) < fraud_rate
    pattern = np.zeros(n, dtype=np.int64)  # 0 = none, k = PATTERNS[k - 1]
    fi = np.flatnonzero(is_fraud)
    pattern[fi] = 1 + _pick(rng, np.array(_PATTERN_P), fi.size)
    nf = fi.size
    u = rng.random(nf)

    def where(k: int) -> np.ndarray:
        rows: np.ndarray = fi[pattern[fi] == k]
        return rows

    # card testing: small online amounts in bursts.
    ix = where(1)
    k = ix.size
    c, p = _cats({"online_services": 0.35, "gaming": 0.3, "gift_cards": 0.2, "grocery": 0.15})
    cat[ix] = c[_pick(rng, p, k)]
    amount_eur[ix] = rng.lognormal(np.log(3.0), 0.9, k)
    present[ix] = rng.random(k) < 0.05
    count_1h[ix] = rng.integers(1, 9, k)
    count_24h[ix] = count_1h[ix] + rng.poisson(3.0, k)
    hour[ix] = _pick(rng, _ODD_HOURS, k)
    mismatch[ix] = rng.random(k) < 0.3

    # account takeover: far above the card's average, often at night and from abroad.
    ix = where(2)
    k = ix.size
    c, p = _cats(
        {"electronics": 0.35, "jewelry": 0.2, "gift_cards": 0.15, "apparel": 0.15, "travel": 0.15}
    )
    cat[ix] = c[_pick(rng, p, k)]
    amount_eur[ix] = avg_eur[ix] * rng.lognormal(np.log(5.0), 0.8, k)
    hour[ix] = np.where(rng.random(k) < 0.5, rng.integers(0, 6, k), _pick(rng, _DAY_HOURS, k))
    mismatch[ix] = rng.random(k) < 0.45
    present[ix] = rng.random(k) < 0.2
    count_24h[ix] = count_24h[ix] + rng.poisson(1.5, k)

    # new-card fraud: a days-old card cashing out through gift cards and transfers.
    ix = where(3)
    k = ix.size
    c, p = _cats({"gift_cards": 0.35, "money_transfer": 0.35, "electronics": 0.3})
    cat[ix] = c[_pick(rng, p, k)]
    card_age[ix] = rng.integers(0, 40, k)
    amount_eur[ix] = rng.lognormal(np.log(300.0), 0.8, k)
    present[ix] = rng.random(k) < 0.15
    count_24h[ix] = count_24h[ix] + rng.poisson(2.0, k)
    mismatch[ix] = rng.random(k) < 0.15

    # cross-border: abroad, travel/electronics, unusual hours.
    ix = where(4)
    k = ix.size
    c, p = _cats({"travel": 0.3, "electronics": 0.3, "restaurants": 0.15, "jewelry": 0.25})
    cat[ix] = c[_pick(rng, p, k)]
    mismatch[ix] = True
    hour[ix] = _pick(rng, _ODD_HOURS, k)
    amount_eur[ix] = avg_eur[ix] * rng.lognormal(np.log(2.5), 0.9, k)
    present[ix] = rng.random(k) < 0.5

    # A share of fraud keeps the card's usual habits on some signals (the hard cases).
    stealth = fi[u < 0.35]
    for col, usual in (
        (hour, legit_hour),
        (count_1h, legit_1h),
        (count_24h, legit_24h),
        (present, legit_present),
    ):
        keep = stealth[rng.random(stealth.size) < 0.6]
        col[keep] = usual[keep]
    count_24h = np.maximum(count_24h, count_1h)  # the last hour is part of the last day
    # --- money, currency, unknown averages ----------------------------------------------
    cur = card_cur[card]
    foreign = np.flatnonzero(mismatch & (rng.random(n) < 0.8))
    cur[foreign] = _FOREIGN_CUR[_pick(rng, _FOREIGN_P, foreign.size)]
    rate = _RATE[cur]
    amount_eur = np.minimum(amount_eur, MAX_AMOUNT_EUR)
    amount = np.maximum(amount_eur / rate, 0.01)
    amount = np.where(np.isin(cur, [_CUR["JPY"]]), np.ceil(amount), np.round(amount, 2))
    avg = np.round(avg_eur / rate, 2)
    unknown = rng.random(n) < np.where(card_age < 30, 0.5, 0.02)
    avg = np.where(unknown, np.nan, avg)

    # --- time and order ----------------------------------------------------------------
    hour = np.mod(hour, 24)
    local = (
        start_utc.astype("datetime64[D]")
        + day.astype("timedelta64[D]")
        + (hour * 3600 + sec_of_hour).astype("timedelta64[s]")
    ).astype("datetime64[s]")
    utc = local - offset_min.astype("timedelta64[m]")
    order = np.argsort(utc, kind="stable")

    ids = np.array([f"tx-{seed}-{i:08d}" for i in range(n)], dtype=str)
    card_names = np.array([f"card-{seed}-{i:06d}" for i in range(m)], dtype=str)
    pattern_names = np.array(("none", *PATTERNS))
    return {
        "transaction_id": ids,
        "card_id": card_names[card[order]],
        "timestamp": local[order],
        "utc_offset_min": offset_min[order],
        "hour": hour[order].astype(np.int64),
        "amount": amount[order],
        "currency": np.array(CURRENCIES)[cur[order]],
        "merchant_category": np.array(MERCHANT_CATEGORIES)[cat[order]],
        "card_age_days": card_age[order].astype(np.int64),
        "card_present": present[order],
        "country_mismatch": mismatch[order],
        "txn_count_1h": count_1h[order].astype(np.int64),
        "txn_count_24h": count_24h[order].astype(np.int64),
        "avg_amount_30d": avg[order],
        "customer_age_band": np.array(AGE_BANDS)[card_band[card[order]]],
        "region": np.array(REGION_NAMES)[region[order]],
        "is_fraud": is_fraud[order].astype(np.int8),
        "fraud_pattern": pattern_names[pattern[order]],
    }


def iso_timestamps(cols: Mapping[str, Any], start: int = 0, stop: int | None = None) -> list[str]:
    """ISO 8601 timestamps with the merchant's UTC offset, e.g. `2024-03-01T14:05:00+01:00`."""
    local = np.asarray(cols["timestamp"][start:stop], dtype="datetime64[s]")
    offsets = np.asarray(cols["utc_offset_min"][start:stop], dtype=np.int64)
    text = np.datetime_as_string(local, unit="s")
    suffix = {o: _offset(int(o)) for o in np.unique(offsets)}
    return [f"{t}{suffix[o]}" for t, o in zip(text.tolist(), offsets.tolist(), strict=True)]


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    h, mi = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{mi:02d}"


def to_records(
    cols: Mapping[str, Any], start: int = 0, stop: int | None = None
) -> list[dict[str, Any]]:
    """Rows `start:stop` as JSON-ready dicts that validate as `fraud.schema.Transaction`.

    Plain Python types, ISO timestamps with offset, `avg_amount_30d` None when unknown; the
    labels (`is_fraud`, `fraud_pattern`) and derived `hour` are left out.
    """
    out: dict[str, list[Any]] = {}
    for name in RECORD_FIELDS:
        if name == "timestamp":
            out[name] = iso_timestamps(cols, start, stop)
        elif name == "avg_amount_30d":
            out[name] = [
                None if math.isnan(v) else v for v in np.asarray(cols[name][start:stop]).tolist()
            ]
        else:
            out[name] = np.asarray(cols[name][start:stop]).tolist()
    rows = zip(*(out[name] for name in RECORD_FIELDS), strict=True)
    return [dict(zip(RECORD_FIELDS, row, strict=True)) for row in rows]


def write_csv(cols: Mapping[str, Any], path: Path) -> int:
    """Write `CSV_FIELDS` as CSV (gzip when the name ends in `.gz`); returns the row count.

    Booleans are 0/1, an unknown `avg_amount_30d` is an empty field, timestamps are ISO 8601
    with offset (`iso_timestamps`).
    """
    n = len(cols["transaction_id"])
    data: list[list[Any]] = []
    for name in CSV_FIELDS:
        if name == "timestamp":
            data.append(iso_timestamps(cols))
        elif name == "avg_amount_30d":
            data.append(["" if math.isnan(v) else v for v in np.asarray(cols[name]).tolist()])
        elif name in ("card_present", "country_mismatch", "is_fraud"):
            data.append(np.asarray(cols[name]).astype(np.int8).tolist())
        else:
            data.append(np.asarray(cols[name]).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        w.writerows(zip(*data, strict=True))
    return n
