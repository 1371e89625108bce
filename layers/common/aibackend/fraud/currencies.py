"""Currencies the fraud service accepts and their static rates to the base currency (EUR).

Apart from `features` (numpy) so that what only needs the list, the transaction contract and the
event contracts that carry it, imports without the `ml` layer.
"""

from __future__ import annotations

#: Static rates to the base currency (EUR). The pipeline issue replaces this with a rates table.
CURRENCY_TO_EUR: dict[str, float] = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CHF": 1.04,
    "SEK": 0.088,
    "NOK": 0.086,
    "DKK": 0.134,
    "PLN": 0.23,
    "CZK": 0.040,
    "JPY": 0.0061,
    "CAD": 0.68,
    "AUD": 0.61,
    "BRL": 0.17,
    "INR": 0.011,
    "MXN": 0.051,
}
