"""Training the recommendations model: the NDCG target on generated data, and `aib train
recommendations --data FILE` on a file of your own."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aibackend.adapters import model_registry
from aibackend.cli import main as aib
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings
from aibackend.training.local import train_local

pytestmark = pytest.mark.slow


def test_ndcg_at_10_is_at_least_1_2x_the_popularity_baseline(
    recommendations_state: Path,
) -> None:
    # GIVEN the model trained by default (200k generated interactions, 5,000 users)
    mv = model_registry(PlatformSettings(state_dir=recommendations_state)).production(
        "recommendations"
    )
    assert mv is not None
    model, popular = mv.card.metrics, mv.card.baselines["popularity"]
    # THEN on each user's latest 20% of interactions it beats popularity by 1.2x or more
    assert model["ndcg_at_10"] >= 1.2 * popular["ndcg_at_10"]
    assert model["precision_at_10"] > popular["precision_at_10"]
    assert model["recall_at_10"] > popular["recall_at_10"]
    assert model["users"] == popular["users"] >= 4_000


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_aib_train_data_trains_on_a_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a file of your own: no ratings, no timestamps, 60 users over 3 shop aisles
    rows = ["user_id,item_id"]
    for u in range(60):
        aisle = u % 3
        rows += [f"shopper-{u},sku-{aisle}-{(u + j) % 8}" for j in range(6)]
    data = _write(tmp_path / "orders.csv", rows)
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path / "state"))
    # WHEN `aib train recommendations --data orders.csv` runs
    code = aib(["train", "recommendations", "--data", str(data)])
    # THEN a version is registered and promoted, its card naming the file and its checksum
    assert code == 0, capsys.readouterr().err
    assert "registered recommendations v1" in capsys.readouterr().out
    mv = model_registry(PlatformSettings(state_dir=tmp_path / "state")).production(
        "recommendations"
    )
    assert mv is not None and mv.version == 1
    assert mv.card.training_data.source == "orders.csv"
    assert mv.card.training_data.fingerprint == hashlib.sha256(data.read_bytes()).hexdigest()
    assert mv.card.inputs[0].shape == ("batch", 24)


def test_aib_train_data_with_a_bad_file_says_which_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write(
        tmp_path / "ratings.csv",
        ["user_id,item_id,rating,timestamp", "u1,i1,5,2026-01-02", "u1,i2,5,last tuesday"],
    )
    monkeypatch.setenv("AIB_STATE_DIR", str(tmp_path / "state"))
    assert aib(["train", "recommendations", "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "ratings.csv, line 3, column 'timestamp': 'last tuesday' is not a time" in err


def test_train_local_refuses_bad_data_arguments_before_running(tmp_path: Path) -> None:
    settings = PlatformSettings(state_dir=tmp_path / "state")
    good = _write(tmp_path / "x.csv", ["user_id,item_id", "u,i"])
    with pytest.raises(ConfigError, match=r"either rows .* or a data file, not both"):
        train_local("recommendations", settings, rows=10, data=good)
    with pytest.raises(ConfigError, match="no such file"):
        train_local("recommendations", settings, data=tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match=r"name it \*\.csv or \*\.csv\.gz"):
        train_local("recommendations", settings, data=_write(tmp_path / "x.txt", ["a"]))
    assert not (tmp_path / "state" / "training").exists()
