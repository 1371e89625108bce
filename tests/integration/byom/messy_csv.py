"""Seeded generators of messy CSVs, the kind exported from spreadsheets and CRMs.

Each writes a file a person would hand to `aib model train` without cleaning it first, and has a
learnable signal, so tests can check both that training copes and that the model learned.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

CITIES = [f"City {i:03d}" for i in range(400)]


def churn_csv(path: Path, rows: int = 1500, seed: int = 3) -> Path:
    """Binary classification, UTF-8 with a BOM and CRLF line ends. Headers padded with spaces;
    a customer id unique per row; Age mostly numbers with "unknown"/"n/a" and blanks; money as
    "$1,234.50" (quoted: it holds the delimiter); a 400-city column (Zipf: a long tail); a
    Yes/no/Y/N member flag; a free-text notes column with quoted commas and newlines; a
    constant country; a trailing empty column; Churned (Yes/No) blank on some rows."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(
        [
            " Customer ID",
            "Age ",
            "  Monthly Charges ($)",
            "Plan",
            "City",
            "Is Member",
            "Support Calls",
            "Notes",
            "Country",
            "Churned",
            "",
        ]
    )
    for i in range(rows):
        age = int(rng.integers(18, 80))
        charges = float(rng.gamma(4.0, 20.0))
        plan = str(rng.choice(["basic", "pro", "Family plan"], p=[0.5, 0.3, 0.2]))
        city = CITIES[min(int(rng.zipf(1.3)) - 1, len(CITIES) - 1)]
        member = bool(rng.random() < 0.4)
        calls = int(rng.poisson(1.5))
        logit = -1.0 + 0.03 * (charges - 80) + 0.6 * calls - 1.2 * member - 0.02 * (age - 45)
        logit += 0.8 * (plan == "basic")
        churned = rng.random() < 1 / (1 + math.exp(-logit))
        age_cell = str(age) if rng.random() > 0.06 else str(rng.choice(["unknown", "n/a", ""]))
        member_cell = str(rng.choice(["Yes", "Y", "yes"] if member else ["No", "n", "no"]))
        said = rng.choice(["ok", "too expensive", "moving"])
        note = f'Ticket {rng.integers(10**6)}: called {calls} times, said: "{said}"'
        if rng.random() < 0.1:
            note += "\nfollow-up needed"
        w.writerow(
            [
                f"C-{100000 + i}",
                f" {age_cell} ",
                f"${charges:,.2f}" if rng.random() > 0.03 else "",
                plan,
                city,
                member_cell,
                calls,
                note,
                "US",
                "" if rng.random() < 0.02 else ("Yes" if churned else "No"),
                "",
            ]
        )
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    return path


def prices_csv(path: Path, rows: int = 800, seed: int = 5) -> Path:
    """Regression, semicolon-delimited and Windows-1252 encoded (accented districts, "m²").
    Surface sometimes "N/A"; a garden flag 1/0 with blanks; the price (the target) blank on a
    few rows; a zip code with leading zeros (a code, not a number)."""
    rng = np.random.default_rng(seed)
    districts = ["Vieux Lyon", "Croix-Rousse", "Confluence", "Gerland", "Brotteaux", "Montchat"]
    premium = dict(zip(districts, [1.3, 1.2, 1.15, 0.9, 1.4, 1.0], strict=True))
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\n")
    w.writerow(["Surface (m²)", "Rooms", "District", "Garden", "Zip", "Price (€)"])
    for _ in range(rows):
        surface = float(rng.uniform(20, 160))
        rooms = max(1, int(surface // 25 + rng.integers(-1, 2)))
        district = str(rng.choice(districts))
        garden = bool(rng.random() < 0.3)
        price = 4200 * surface * premium[district] * (1.1 if garden else 1.0)
        price *= float(rng.normal(1.0, 0.05))
        w.writerow(
            [
                "N/A" if rng.random() < 0.03 else f"{surface:.1f}",
                rooms,
                district.replace("Brotteaux", "Brotteaux é").replace("Montchat", "Montchat ô"),
                "" if rng.random() < 0.05 else int(garden),
                f"{int(rng.integers(1, 10)) * 1000:05d}",
                "" if rng.random() < 0.02 else f"{price:.0f}",
            ]
        )
    path.write_bytes(out.getvalue().encode("cp1252"))
    return path


def species_csv(path: Path, rows: int = 240, seed: int = 11) -> Path:
    """Multiclass, tab-delimited: three species by two measurements and a colour, plus one
    species seen twice (too rare to learn: dropped and reported) and a short-row line."""
    rng = np.random.default_rng(seed)
    centers = {"setosa": (1.5, 0.3), "versicolor": (4.3, 1.3), "virginica": (5.6, 2.0)}
    colours = {"setosa": "blue", "versicolor": "violet", "virginica": "purple"}
    lines = ["petal_length\tpetal_width\tcolour\tspecies"]
    for i in range(rows):
        name = list(centers)[i % 3]
        length, width = centers[name]
        colour = colours[name] if rng.random() > 0.2 else str(rng.choice(list(colours.values())))
        lines.append(
            f"{length + rng.normal(0, 0.3):.2f}\t{width + rng.normal(0, 0.15):.2f}\t"
            f"{colour}\t{name}"
        )
    lines += ["9.9\t3.1\tgreen\tmystery", "9.8\t3.0\tgreen\tmystery", "4.1\t1.2"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
