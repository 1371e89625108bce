"""Secrets: declared in function.toml, read by logical name from SSM on AWS and from the
environment or the state folder on one machine."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from aibackend.catalog import load_function
from aibackend.errors import ConfigError
from aibackend.secrets import (
    LOCAL_FILE,
    MAX_AGE_S,
    get_secret,
    secret_env,
    secret_value_env,
    set_local_secret,
)
from aibackend.settings import PlatformSettings


def _fn(root: Path, toml: str) -> Path:
    d = root / "payer"
    d.mkdir(parents=True)
    (d / "function.toml").write_text(toml)
    (d / "handler.py").write_text("def handler(event, context):\n    return {}\n")
    return d


@pytest.fixture
def local(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(adapters="local", state_dir=tmp_path / ".aib")


AWS = PlatformSettings(adapters="aws")


# --- declarations -------------------------------------------------------------------------------


def test_declared_secrets_map_logical_names_to_parameter_names(tmp_path: Path) -> None:
    # GIVEN a declaration with a [secrets] table
    d = _fn(
        tmp_path,
        '[secrets]\nstripe_key = "/aib/payments/stripe-key"\nwebhook_2 = "/aib/hooks/v2.secret"\n',
    )
    # WHEN it is loaded
    spec = load_function(d)
    # THEN every entry is kept as declared
    assert spec.secrets == {
        "stripe_key": "/aib/payments/stripe-key",
        "webhook_2": "/aib/hooks/v2.secret",
    }


def test_a_declaration_without_secrets_has_none(tmp_path: Path) -> None:
    assert load_function(_fn(tmp_path, "memory_mb = 256\n")).secrets == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"Stripe-Key" = "/aib/stripe"', "secrets.Stripe-Key.[key]"),
        ('stripe = "aib/stripe"', "secrets.stripe"),
        ('stripe = "/aib/stripe key"', "secrets.stripe"),
        ('stripe = "/aib/$tripe"', "secrets.stripe"),
        ('value_stripe = "/aib/stripe"', "may not start with 'value_'"),
    ],
)
def test_bad_secret_entries_fail_naming_the_file_and_the_entry(
    tmp_path: Path, entry: str, message: str
) -> None:
    # GIVEN a [secrets] entry whose name is no identifier or whose parameter name SSM refuses
    d = _fn(tmp_path, f"[secrets]\n{entry}\n")
    # WHEN it is loaded
    with pytest.raises(ConfigError) as err:
        load_function(d)
    # THEN the error names the file and the entry
    assert str(d / "function.toml") in str(err.value)
    assert message in str(err.value)


def test_variable_names_follow_the_logical_name() -> None:
    assert secret_env("stripe_key") == "AIB_SECRET_STRIPE_KEY"
    assert secret_value_env("stripe_key") == "AIB_SECRET_VALUE_STRIPE_KEY"


# --- one machine --------------------------------------------------------------------------------


def test_local_value_comes_from_the_environment_first(local: PlatformSettings) -> None:
    # GIVEN a value in the state folder and another in the environment
    set_local_secret(local, "stripe_key", "from-file")
    env = {"AIB_SECRET_VALUE_STRIPE_KEY": "from-env"}
    # THEN the environment wins (a one-off override needs no file edit)
    assert get_secret("stripe_key", settings=local, env=env) == "from-env"
    assert get_secret("stripe_key", settings=local, env={}) == "from-file"


def test_set_local_secret_keeps_other_values_and_is_owner_only(local: PlatformSettings) -> None:
    # GIVEN two secrets stored one after the other
    set_local_secret(local, "stripe_key", "sk_1")
    path = set_local_secret(local, "webhook", "wh_1")
    # THEN both are in <state_dir>/secrets.json, which only its owner may read
    assert path == local.state_dir / LOCAL_FILE
    assert json.loads(path.read_text()) == {"stripe_key": "sk_1", "webhook": "wh_1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # AND replacing a value leaves no temporary file behind
    set_local_secret(local, "stripe_key", "sk_2")
    assert get_secret("stripe_key", settings=local, env={}) == "sk_2"
    assert [p.name for p in local.state_dir.iterdir()] == [LOCAL_FILE]


def test_missing_local_secret_says_how_to_set_it(local: PlatformSettings) -> None:
    # GIVEN function payer reads a secret that has no local value
    with pytest.raises(ConfigError) as err:
        get_secret("stripe_key", settings=local, env={"POWERTOOLS_SERVICE_NAME": "payer"})
    # THEN the error says where to set it and which declaration entry it belongs to
    msg = str(err.value)
    assert "AIB_SECRET_VALUE_STRIPE_KEY" in msg
    assert str(local.state_dir / LOCAL_FILE) in msg
    assert "functions/payer/function.toml names under [secrets] stripe_key" in msg


def test_a_broken_local_file_is_named_without_its_content(local: PlatformSettings) -> None:
    local.state_dir.mkdir(parents=True)
    (local.state_dir / LOCAL_FILE).write_text('["sk_live_do_not_print"]')
    with pytest.raises(ConfigError) as err:
        get_secret("stripe_key", settings=local, env={})
    assert str(local.state_dir / LOCAL_FILE) in str(err.value)
    assert "sk_live_do_not_print" not in str(err.value)


def test_a_name_that_is_no_logical_name_is_refused(local: PlatformSettings) -> None:
    with pytest.raises(ConfigError, match="logical name declared under \\[secrets\\]"):
        get_secret("/aib/payments/stripe-key", settings=local, env={})


# --- AWS (Powertools' SSM call replaced: no network) --------------------------------------------


def test_on_aws_the_declared_parameter_is_read_decrypted_and_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN CDK set AIB_SECRET_STRIPE_KEY to the declared parameter
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_get_parameter(name: str, **kwargs: Any) -> str:
        calls.append((name, kwargs))
        return "sk_live"

    monkeypatch.setattr(parameters, "get_parameter", fake_get_parameter)
    env = {"AIB_SECRET_STRIPE_KEY": "/aib/payments/stripe-key"}
    # WHEN the function reads it
    value = get_secret("stripe_key", settings=AWS, env=env)
    # THEN the SecureString is fetched decrypted and reused for MAX_AGE_S
    assert value == "sk_live"
    assert calls == [("/aib/payments/stripe-key", {"decrypt": True, "max_age": MAX_AGE_S})]
    assert MAX_AGE_S == 300


def test_on_aws_an_undeclared_secret_names_the_declaration_to_add() -> None:
    with pytest.raises(ConfigError) as err:
        get_secret("stripe_key", settings=AWS, env={"POWERTOOLS_SERVICE_NAME": "payer"})
    assert "add it to functions/payer/function.toml" in str(err.value)
    assert '[secrets] stripe_key = "/aib/stripe_key"' in str(err.value)


def test_on_aws_an_unreadable_parameter_says_which_and_how_to_create_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def denied(name: str, **kwargs: Any) -> str:
        raise GetParameterError("ParameterNotFound")

    monkeypatch.setattr(parameters, "get_parameter", denied)
    with pytest.raises(ConfigError) as err:
        get_secret("stripe_key", settings=AWS, env={"AIB_SECRET_STRIPE_KEY": "/aib/x"})
    assert "'/aib/x'" in str(err.value)
    assert "aws ssm put-parameter --type SecureString --name /aib/x" in str(err.value)


def test_importing_the_module_loads_neither_powertools_parameters_nor_boto3() -> None:
    # A function that declares no secret must not pay for them at cold start.
    code = (
        "import sys, aibackend.secrets; "
        "print(sorted(m for m in ('boto3', 'aws_lambda_powertools.utilities.parameters') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
