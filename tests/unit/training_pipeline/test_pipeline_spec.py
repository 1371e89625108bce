"""The pipeline declaration: one per trainable model, `[pipeline.<model>]` over the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.errors import ConfigError
from aibackend.training.local import TRAINABLE
from aibackend.training.pipeline import (
    CHANNEL,
    EVALUATION,
    GATE,
    MODEL,
    STEP_NAMES,
    pipeline_spec,
    pipeline_specs,
)
from tests.conftest import ROOT


def _config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "training.toml").write_text(text)
    return tmp_path


def test_every_trainable_model_has_a_pipeline_with_the_five_steps(tmp_path: Path) -> None:
    # GIVEN no training.toml at all
    specs = pipeline_specs(tmp_path)
    # THEN each trainable model gets the defaults: its entry point, CPU, the framework image
    assert set(specs) == set(TRAINABLE)
    for name, spec in specs.items():
        assert spec.entry_point == TRAINABLE[name].module
        assert spec.rows == TRAINABLE[name].default_rows
        assert (spec.instance_type, spec.gpu, spec.framework) == ("ml.m5.large", False, True)
        # AND the steps run in order, each reading what an earlier one wrote
        assert tuple(s.name for s in spec.steps) == STEP_NAMES
        assert STEP_NAMES == ("prepare", "train", "evaluate", "gate", "register")
        written: set[str] = set()
        for step in spec.steps:
            assert set(step.inputs) <= written, step.name
            written |= set(step.outputs)
        assert {CHANNEL, MODEL, EVALUATION, GATE} <= written


def test_a_section_overrides_instance_image_and_hyperparameters(tmp_path: Path) -> None:
    # GIVEN a GPU instance, an own image and a hyperparameter for one model
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aib-train:1.0"
    d = _config(
        tmp_path,
        f'[pipeline.sentiment]\ninstance_type = "ml.g5.xlarge"\nimage = "{image}"\n'
        "hyperparameters = { max_iter = 50 }\n",
    )
    spec = pipeline_spec("sentiment", d)
    # THEN that model's pipeline carries them, the others keep the defaults
    assert (spec.instance_type, spec.gpu, spec.image, spec.framework) == (
        "ml.g5.xlarge",
        True,
        image,
        False,
    )
    assert spec.hyperparameters == {"max_iter": 50}
    assert pipeline_spec("fraud", d).instance_type == "ml.m5.large"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[pipeline.nope]\ninstance_type = "ml.m5.large"\n', "no trainable model 'nope'"),
        ('[pipeline.fraud]\ninstance_type = "m5.large"\n', "pipeline.fraud.instance_type"),
        ('[pipeline.fraud]\nimage = "python:3.12"\n', "pipeline.fraud.image"),
        ("[pipeline.fraud]\ngpus = 1\n", "pipeline.fraud.gpus"),
        ("[pipeline.fraud\n", "not valid TOML"),
    ],
)
def test_a_bad_section_is_refused_naming_the_key(
    tmp_path: Path, section: str, message: str
) -> None:
    # GIVEN a section that names an unknown model, a bad value or an unknown key
    d = _config(tmp_path, section)
    # THEN loading fails, naming what to fix
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        pipeline_specs(d)


def test_an_unknown_model_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"known: .*fraud"):
        pipeline_spec("nope", tmp_path)


def test_the_project_declares_a_larger_instance_for_fraud() -> None:
    # GIVEN the project's functions/training.toml
    specs = pipeline_specs(ROOT / "functions")
    # THEN fraud's 500k rows train on ml.m5.xlarge, the rest on the default
    assert specs["fraud"].instance_type == "ml.m5.xlarge"
    assert specs["sentiment"].instance_type == "ml.m5.large"
