"""Secrets a function declares in its `function.toml`, read at run time by logical name.

```toml
[secrets]
stripe_key = "/aib/payments/stripe-key"   # logical name = SSM parameter name
```

On AWS the value is an SSM Parameter Store SecureString. CDK sets `AIB_SECRET_STRIPE_KEY` to the
parameter name and grants the function's role `ssm:GetParameter` on that parameter only;
`get_secret("stripe_key")` reads it through Powertools' parameters utility (decrypted, cached
for `MAX_AGE_S` per container). A SecureString under the default `aws/ssm` key needs no more;
one under a customer-managed key also needs that key's policy (or an IAM grant) to allow the
role `kms:Decrypt`, which CDK does not add.

On one machine the value comes from `AIB_SECRET_VALUE_STRIPE_KEY` if set, else from
`<state_dir>/secrets.json` (`{"stripe_key": "..."}`, written by `set_local_secret`, mode 0600).

Powertools and boto3 are imported only when a secret is first read on AWS: a function that
declares no secret does not pay for them at cold start.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aibackend.errors import ConfigError
from aibackend.settings import ENV_PREFIX, PlatformSettings, platform_settings

#: Seconds a value read from SSM is reused before it is read again (rotation takes that long
#: to reach a warm container).
MAX_AGE_S = 300
#: The local store of secret values, in the state folder.
LOCAL_FILE = "secrets.json"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def secret_env(name: str) -> str:
    """Variable holding a secret's SSM parameter name on AWS, e.g. `AIB_SECRET_STRIPE_KEY`."""
    return f"{ENV_PREFIX}SECRET_{name.upper()}"


def secret_value_env(name: str) -> str:
    """Variable holding a secret's value on one machine, e.g. `AIB_SECRET_VALUE_STRIPE_KEY`."""
    return f"{ENV_PREFIX}SECRET_VALUE_{name.upper()}"


def local_secrets_path(settings: PlatformSettings) -> Path:
    return settings.state_dir / LOCAL_FILE


def get_secret(
    name: str,
    *,
    settings: PlatformSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The value of the secret the function's `function.toml` declares as `[secrets] <name>`.

    Raises ConfigError, saying which declaration entry is missing or how to set the value
    locally, when there is none.
    """
    _check_name(name)
    settings = platform_settings() if settings is None else settings
    env = os.environ if env is None else env
    if settings.adapters == "aws":
        return _from_ssm(name, env)
    return _from_local(name, settings, env)


def set_local_secret(settings: PlatformSettings, name: str, value: str) -> Path:
    """Store `value` as the local value of secret `name` in `<state_dir>/secrets.json`.

    The file is replaced atomically and is readable by its owner only (0600). Returns its path.
    """
    _check_name(name)
    path = local_secrets_path(settings)
    values = _read_local(path)
    values[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600: the value is never readable by others, not even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secrets.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=True)
            f.write("\n")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(
            f"secret name {name!r}: use the logical name declared under [secrets] in "
            "function.toml (lowercase letters, digits and '_', starting with a letter)"
        )


def _declaration(env: Mapping[str, str]) -> str:
    """The declaration of the running function (both topologies set its service name)."""
    function = env.get("POWERTOOLS_SERVICE_NAME")
    return f"functions/{function}/function.toml" if function else "the function's function.toml"


def _from_ssm(name: str, env: Mapping[str, str]) -> str:
    parameter = env.get(secret_env(name))
    if not parameter:
        raise ConfigError(
            f"secret {name!r} is not declared for this function ({secret_env(name)} is not "
            f"set): add it to {_declaration(env)}, e.g. [secrets] {name} = "
            f'"/aib/{name}", and deploy (CDK grants ssm:GetParameter on that parameter)'
        )
    from aws_lambda_powertools.utilities.parameters import get_parameter
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        return get_parameter(parameter, decrypt=True, max_age=MAX_AGE_S)
    except GetParameterError as e:
        raise ConfigError(
            f"secret {name!r}: SSM parameter {parameter!r} ({_declaration(env)} [secrets] {name}) "
            f"could not be read: {e}. Create it with `aws ssm put-parameter --type SecureString "
            f"--name {parameter} --value ...`; a parameter under a customer-managed KMS key "
            "also needs that key to allow the function's role kms:Decrypt"
        ) from e


def _from_local(name: str, settings: PlatformSettings, env: Mapping[str, str]) -> str:
    value = env.get(secret_value_env(name))
    if value is not None:
        return value
    path = local_secrets_path(settings)
    values = _read_local(path)
    if name in values:
        return values[name]
    raise ConfigError(
        f"secret {name!r} has no local value: set {secret_value_env(name)} in the environment "
        f"or store it in {path} (aibackend.secrets.set_local_secret); on AWS it is the SSM "
        f"parameter {_declaration(env)} names under [secrets] {name}"
    )


def _read_local(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable local secrets file: {e}") from e
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        # Never the content in the message: it holds secret values.
        raise ConfigError(f"{path}: must be a JSON object of secret name -> string value")
    return raw
