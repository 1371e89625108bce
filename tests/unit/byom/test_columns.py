"""Schema inference on messy columns, the task from the target, and failures that say what to
do about them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from aibackend.byom.training.columns import (
    FeatureColumn,
    IgnoredColumn,
    infer_feature,
    parse_number,
    plan_dataset,
    plan_target,
)
from aibackend.byom.training.csvfile import Table
from aibackend.training.common import TrainingError


def _infer(name: str, cells: Sequence[str]) -> FeatureColumn | IgnoredColumn:
    return infer_feature(name, cells, max_categories=3, min_category_rows=2)


def _table(**columns: Sequence[str]) -> Table:
    return Table(
        source="t.csv",
        header=tuple(columns),
        columns=tuple(tuple(c) for c in columns.values()),
        encoding="utf-8",
        delimiter=",",
    )


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("12", 12.0),
        ("-1,234.5", -1234.5),
        ("$1,234", 1234.0),
        ("12 %", 12.0),
        ("€ 3.5", 3.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("inf", None),
        ("1,23", None),
        ("twelve", None),
        ("--3", None),
    ],
)
def test_numbers_are_read_the_way_spreadsheets_write_them(cell: str, value: float | None) -> None:
    assert parse_number(cell) == value


def test_a_mostly_numeric_column_keeps_its_numbers_and_reports_the_rest_as_missing() -> None:
    # GIVEN 60 ages, two of them words and one blank
    cells = [str(20 + i % 50) for i in range(57)] + ["unknown", "n.a.", ""]
    col = _infer("Age", cells)
    # THEN it is numeric, the words and the blank are missing, and the words are named
    assert isinstance(col, FeatureColumn) and col.kind == "numeric"
    assert col.missing == 3
    assert math.isnan(col.values[-1]) and col.values[0] == 20.0
    assert col.notes == ("2 non-numeric value(s) read as missing (e.g. 'n.a.', 'unknown')",)


def test_a_column_with_many_words_among_numbers_is_categorical() -> None:
    col = _infer("size", ["S", "M", "L", "42"] * 10)
    assert isinstance(col, FeatureColumn) and col.kind == "categorical"


@pytest.mark.parametrize(
    "cells",
    [["Yes", "no", "Y", "N", ""] * 8, ["1", "0"] * 20, ["TRUE", "false", "t", "F"] * 10],
)
def test_boolean_spellings_become_one_and_zero(cells: list[str]) -> None:
    col = _infer("member", cells)
    assert isinstance(col, FeatureColumn) and col.kind == "boolean"
    expected = [
        math.nan if c == "" else float(c.lower() in {"yes", "y", "1", "true", "t"}) for c in cells
    ]
    np.testing.assert_array_equal(col.values, expected)


@pytest.mark.parametrize(
    ("name", "cells", "reason"),
    [
        ("id", [str(i) for i in range(40)], "identifier (a different integer in every row)"),
        ("row", [str(100 + i) for i in range(40)], "identifier (a different integer in every row)"),
        (
            "customer",
            [f"C-{i:04d}" for i in range(40)],
            "identifier-like (100% of values distinct)",
        ),
        ("country", ["US"] * 40, "constant ('US' in every row)"),
        ("unused", ["", "NA", "null", "-"] * 10, "empty (every cell blank)"),
        (
            "notes",
            [f"Called on day {i} about the invoice, twice" for i in range(40)],
            "free text (mean 41 characters, 100% distinct): the trainer uses no text features",
        ),
        ("city", [f"city {i % 20}" for i in range(40)] + ["x"], "no value occurs in 3 or more"),
    ],
)
def test_columns_a_model_cannot_use_are_ignored_with_the_reason(
    name: str, cells: list[str], reason: str
) -> None:
    col = infer_feature(name, cells, max_categories=3, min_category_rows=3)
    assert isinstance(col, IgnoredColumn)
    assert col.reason.startswith(reason)


def test_high_cardinality_keeps_the_most_frequent_categories_and_says_how_many_go() -> None:
    # GIVEN a long-tailed column: a 20 times, b 10, c 5, d 2, then 13 singletons
    cells = ["a"] * 20 + ["b"] * 10 + ["c"] * 5 + ["d"] * 2 + [f"z{i}" for i in range(13)]
    col = _infer("city", cells)
    # THEN the top 3 (max_categories) seen in 2+ rows are kept, the rest counted as unseen
    assert isinstance(col, FeatureColumn) and col.categories == ("a", "b", "c")
    assert col.notes == (
        "17 distinct: the 3 most frequent kept, the other 14 (30% of rows) count as unseen",
    )


def test_codes_stay_categorical_zero_padded_or_named_like_an_id() -> None:
    zips = _infer("zip", ["02134", "10001", "02134", "94105"] * 10)
    stores = _infer("store_id", ["1", "2", "3", "1"] * 10)
    assert isinstance(zips, FeatureColumn) and zips.kind == "categorical"
    assert zips.categories[0] == "02134"
    assert isinstance(stores, FeatureColumn) and stores.kind == "categorical"


def test_one_value_with_blanks_is_a_category_against_blank() -> None:
    col = _infer("discount", ["10", ""] * 20)
    assert isinstance(col, FeatureColumn) and col.kind == "categorical"
    assert col.categories == ("10",) and col.missing == 20


# --- the target ---------------------------------------------------------------------------


def test_blank_targets_are_dropped_and_the_task_follows_the_values() -> None:
    # GIVEN yes/no labels with two blanks
    target = plan_target("churned", ["yes", "no"] * 20 + ["", "NA"], "auto")
    # THEN those rows go, the rest is a binary classification over the labels as written
    assert target.task == "binary_classification"
    assert target.classes == ("no", "yes")
    assert target.keep.sum() == 40 and not target.keep[-2:].any()
    assert target.notes == ("2 row(s) with a blank target dropped",)


@pytest.mark.parametrize(
    ("cells", "task", "classes"),
    [
        ([str(i % 3) for i in range(60)], "multiclass_classification", ("0", "1", "2")),
        ([f"{i % 2}.0" for i in range(60)], "binary_classification", ("0", "1")),
        ([f"{i * 1.5}" for i in range(60)], "regression", ()),
    ],
)
def test_a_numeric_target_is_classes_when_few_distinct_else_regression(
    cells: list[str], task: str, classes: tuple[str, ...]
) -> None:
    target = plan_target("y", cells, "auto")
    assert (target.task, target.classes) == (task, classes)


def test_rare_classes_are_dropped_and_reported() -> None:
    target = plan_target("species", ["a"] * 20 + ["b"] * 20 + ["c"] * 2, "auto")
    assert target.classes == ("a", "b") and target.keep.sum() == 40
    assert "2 row(s) of 1 class(es) seen in fewer than 5 rows dropped ('c' 2)" in target.notes[0]


@pytest.mark.parametrize(
    ("cells", "choice", "message"),
    [
        (
            ["yes"] * 40 + ["no"] * 2,
            "auto",
            r"target 'y' has 1 class\(es\) \('yes', 40 rows\) with at least 5 rows; a classifier "
            "needs two or more",
        ),
        (
            ["a", "b"] * 10,
            "auto",
            r"only 20 row\(s\) have a usable 'y'; training needs at least 30",
        ),
        (
            [f"v{i}" for i in range(60)],
            "auto",
            r"target 'y' has 60 distinct values: too many classes \(at most 50\)",
        ),
        (
            ["cheap", "dear"] * 20,
            "regression",
            r"target 'y' is not numeric \(40 values are not numbers, e.g. 'cheap', 'dear', "
            r"'cheap'\); a regression needs numbers: use --task classification",
        ),
        (["7"] * 40, "regression", r"target 'y' is constant \(7\)"),
    ],
)
def test_a_target_that_cannot_train_says_why(cells: list[str], choice: str, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        plan_target("y", cells, choice)  # type: ignore[arg-type]


def test_a_missing_target_column_lists_the_columns_and_the_closest_one() -> None:
    table = _table(Churned=["yes"], Age=["1"])
    with pytest.raises(
        TrainingError,
        match=r"target column 'churnd' not found \(did you mean 'Churned'\?\); the columns "
        r"are: 'Churned', 'Age'",
    ):
        plan_dataset(table, "churnd")


def test_the_target_is_found_ignoring_case_and_spaces() -> None:
    table = _table(**{"Churned ": ["yes", "no"] * 20, "Age": [str(i * 7 % 40) for i in range(40)]})
    assert plan_dataset(table, "churned").target.name == "Churned "


def test_a_table_with_no_usable_feature_names_each_column_and_why() -> None:
    table = _table(y=["yes", "no"] * 20, id=[str(i) for i in range(40)], c=["US"] * 40)
    with pytest.raises(
        TrainingError,
        match=r"no usable feature column besides the target 'y' \('id': identifier .*; 'c': "
        r"constant",
    ):
        plan_dataset(table, "y")


def test_the_summary_lists_each_column_role() -> None:
    table = _table(
        y=["yes", "no"] * 20,
        age=[str(i) for i in range(39)] + ["?"],
        id=[f"C{i}" for i in range(40)],
    )
    lines = plan_dataset(table, "y").summary()
    assert lines[0] == "target 'y': classification, 2 classes: no 20, yes 20; 40 rows"
    assert lines[2].split() == ["age", "numeric", "1", "missing"]
    assert lines[-1].split()[:2] == ["id", "identifier-like"]
