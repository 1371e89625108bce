"""The local gateway's gate: the authorizer's decision, then the key's usage plan.

On AWS these are two things (the Lambda authorizer, then API Gateway's usage plans); here one
object does both, in the same order, with the same answers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aibackend.auth.decision import Authorizer, Principal
from aibackend.auth.keys import LocalKeyStore
from aibackend.auth.limits import Limited, UsageLimiter
from aibackend.auth.plans import DEV_PLAN, Plan
from aibackend.auth.tokens import DevSigningKey, TokenVerifier
from aibackend.catalog import Route
from aibackend.errors import ConfigError
from aibackend.settings import PlatformSettings

DEV_KEY_NAME = "development"


class OverLimitError(Exception):
    def __init__(self, limited: Limited) -> None:
        super().__init__(limited.detail)
        self.limited = limited


def dev_key_path(settings: PlatformSettings) -> Path:
    return settings.state_dir / "auth" / "dev-key"


class LocalAccess:
    """Attributes: `keys` (LocalKeyStore), `signer` (DevSigningKey), `authorizer`, `limiter`."""

    def __init__(self, settings: PlatformSettings, plans: Mapping[str, Plan]) -> None:
        self.settings = settings
        self.plans = plans
        self.keys = LocalKeyStore(settings.state_dir / "auth" / "keys.db", plans)
        self.signer = DevSigningKey(settings.state_dir / "auth" / "dev-signing-key.pem")
        self.authorizer = Authorizer(self.keys, TokenVerifier(self.signer.settings()))
        self.limiter = UsageLimiter(plans, self.keys)

    def admit(
        self, route: Route, headers: Mapping[str, str]
    ) -> tuple[Principal | None, dict[str, Any] | None]:
        """The principal and the `requestContext.authorizer` the function gets; raises `Denied`
        (401/403) or `OverLimitError` (429)."""
        principal = self.authorizer.check(route, headers)
        if principal is None:
            return None, None
        limited = self.limiter.check(principal.key)
        if limited is not None:
            raise OverLimitError(limited)
        return principal, {"principalId": principal.key.key_id, **principal.context()}

    def jwks(self) -> dict[str, Any]:
        return self.signer.jwks()

    def ensure_dev_key(self) -> tuple[str, bool]:
        """The development key's secret (kept in `<state>/auth/dev-key`, mode 0600, for this
        machine only), and whether it was created now."""
        path = dev_key_path(self.settings)
        if path.is_file():
            secret = path.read_text(encoding="utf-8").strip()
            key = self.keys.lookup(secret)
            if key is not None and not key.revoked:
                return secret, False
        if DEV_PLAN not in self.plans:
            raise ConfigError(
                f"plans.toml declares no {DEV_PLAN!r} plan, which the development key uses; "
                f"add [plans.{DEV_PLAN}]"
            )
        _, secret = self.keys.create(DEV_KEY_NAME, DEV_PLAN)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
        tmp.replace(path)
        return secret, True

    def close(self) -> None:
        self.limiter.flush()
        self.keys.close()
