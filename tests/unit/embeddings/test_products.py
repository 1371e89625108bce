"""The committed product catalog is the seeded generator's output; queries name real
categories."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.embeddings.products import (
    CATALOG_FILE,
    CATEGORIES,
    PER_CATEGORY,
    dump_jsonl,
    generate_products,
    load_products,
    load_queries,
)
from aibackend.errors import ConfigError


def test_the_committed_catalog_is_what_the_generator_writes() -> None:
    assert CATALOG_FILE.read_text(encoding="utf-8") == dump_jsonl(generate_products()), (
        "regenerate it: python -m aibackend.embeddings.products > " + str(CATALOG_FILE)
    )


def test_every_category_has_its_share_and_ids_are_unique() -> None:
    products = load_products()
    assert len(products) == len(CATEGORIES) * PER_CATEGORY
    assert len({p.product_id for p in products}) == len(products)
    counts = {c.name: sum(p.category == c.name for p in products) for c in CATEGORIES}
    assert set(counts.values()) == {PER_CATEGORY}


def test_queries_name_only_catalog_categories() -> None:
    categories = sorted({p.category for p in load_products()})
    queries = load_queries(categories=categories)
    assert len(queries) >= 40
    with pytest.raises(ConfigError, match="unknown categories"):
        load_queries(categories=["running shoes"])


def test_a_broken_line_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "products.jsonl"
    bad.write_text(CATALOG_FILE.read_text().splitlines()[0] + "\n" + '{"product_id": "x"}\n')
    with pytest.raises(ConfigError, match=r"products.jsonl:2"):
        load_products(bad)
