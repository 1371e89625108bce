"""The scaffolded function: a declaration the catalog loads, a two-line handler, safe names."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from aibackend.byom.scaffold import check_name, max_body_kb, name_from_path, scaffold_function
from aibackend.catalog import Access, load_catalog
from aibackend.errors import ConfigError
from aibackend.models.card import Feature, ModelCard


@pytest.fixture
def card(model_dir: Path) -> ModelCard:
    return ModelCard.read(model_dir)


def test_the_scaffold_loads_in_the_catalog_with_its_routes_and_access(
    tmp_path: Path, card: ModelCard
) -> None:
    # WHEN a model's function is scaffolded into a functions folder
    folder, created = scaffold_function(tmp_path, card, command="train")
    # THEN the catalog loads it: health public, predict behind its own scope, docs keyed
    spec = load_catalog(tmp_path).get("tiny_churn")
    assert created and folder == tmp_path / "tiny_churn"
    assert spec.models == ("tiny_churn",)
    access = {(r.method, r.path): (r.access, r.scopes) for r in spec.routes}
    assert access == {
        ("GET", "/v1/models/tiny_churn/health"): (Access.PUBLIC, ()),
        ("POST", "/v1/models/tiny_churn/predict"): (Access.TOKEN, ("predict:tiny_churn",)),
        ("GET", "/v1/models/tiny_churn/card"): (Access.API_KEY, ()),
        ("GET", "/v1/models/tiny_churn/openapi.json"): (Access.API_KEY, ()),
    }
    handler = (folder / "handler.py").read_text()
    assert 'handler = build_handler("tiny_churn")' in handler
    assert sorted(p.name for p in folder.iterdir()) == [
        "__init__.py",
        "function.toml",
        "handler.py",
    ]


def test_scaffolding_again_keeps_the_folder_as_it_is(tmp_path: Path, card: ModelCard) -> None:
    folder, _ = scaffold_function(tmp_path, card, command="train")
    (folder / "function.toml").write_text(
        (folder / "function.toml").read_text().replace("timeout_s = 10", "timeout_s = 20")
    )
    again, created = scaffold_function(tmp_path, card, command="train")
    assert not created and "timeout_s = 20" in (again / "function.toml").read_text()


def test_the_predict_body_limit_fits_a_full_batch_at_the_longest_values(card: ModelCard) -> None:
    # GIVEN a card whose categories are long
    long = card.model_copy(
        update={
            "features": (
                *card.features,
                Feature(name="c" * 40, kind="categorical", categories=("x" * 200, "y")),
            )
        }
    )
    limit = max_body_kb(long) * 1024
    # WHEN 1,000 records carry the longest value of every feature, pretty-printed
    record = {
        f.name: (max(f.categories, key=len) if f.categories else -1.2345678901234567e-300)
        for f in long.features
    }
    body = json.dumps({"records": [record] * 1000}, indent=2)
    # THEN they fit, and the limit stays a multiple of 64 KiB
    assert len(body.encode()) <= limit and limit % (64 * 1024) == 0


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("Churn Data 2024.csv", "churn_data_2024"),
        ("2024-sales.csv.gz", "sales"),
        ("CRM_Export.v2.csv", "crm_export"),
    ],
)
def test_a_model_name_comes_from_the_file_name(file: str, name: str) -> None:
    assert name_from_path(Path(file)) == name


def test_a_file_name_without_letters_asks_for_a_name() -> None:
    with pytest.raises(ConfigError, match="pass --name NAME"):
        name_from_path(Path("2024.csv"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Churn-Risk", "use up to 48 lowercase letters, digits and _"),
        ("fraud", r"'fraud' is a built-in model \(`aib train fraud`\)"),
        ("json", r"'json' is also a Python module \(the standard library\)"),
        ("numpy", r"'numpy' is also a Python module \(.*numpy"),
        ("shared", "model 'shared' is served by other: a new model of that name would replace"),
        ("mine", "exists and is not a generic model service"),
    ],
)
def test_names_that_would_clash_are_refused(tmp_path: Path, name: str, message: str) -> None:
    # GIVEN a function serving model "shared", and a hand-written function "mine"
    for fn, models in (("other", '["shared"]'), ("mine", "[]")):
        (tmp_path / fn).mkdir()
        (tmp_path / fn / "handler.py").write_text("def handler(event, context):\n    return {}\n")
        (tmp_path / fn / "function.toml").write_text(
            textwrap.dedent(f"""\
                handler = "handler.handler"
                models = {models}
            """)
        )
    with pytest.raises(ConfigError, match=message):
        check_name(name, tmp_path)


def test_a_function_of_another_folder_imported_earlier_is_no_module_to_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import sys

    from aibackend.byom.scaffold import shadowed_module

    # GIVEN a process that imported function `earlier_fn` of another project's functions folder
    # (a test suite's runtimes), and a plain package `earlier_lib` on the path
    other = tmp_path / "other" / "functions"
    for name, declared in (("earlier_fn", True), ("earlier_lib", False)):
        (other / name).mkdir(parents=True)
        (other / name / "__init__.py").write_text("")
        if declared:
            (other / name / "function.toml").write_text('handler = "handler.handler"\n')
    monkeypatch.syspath_prepend(str(other))
    here = tmp_path / "project" / "functions"
    here.mkdir(parents=True)
    try:
        for name in ("earlier_fn", "earlier_lib"):
            importlib.import_module(name)
        # THEN a new function of that name here hides nothing, and the library still counts
        assert shadowed_module("earlier_fn", here) is None
        assert shadowed_module("earlier_lib", here) == str(other / "earlier_lib" / "__init__.py")
    finally:
        for name in ("earlier_fn", "earlier_lib"):
            sys.modules.pop(name, None)
