"""Adapters for the settings: the key store and the token verifier of this topology."""

from __future__ import annotations

from collections.abc import Mapping

from aibackend.auth.decision import KeyLookup
from aibackend.auth.keys import LocalKeyStore
from aibackend.auth.plans import DEFAULT_PLANS, Plan
from aibackend.auth.tokens import DevSigningKey, TokenSettings, TokenVerifier
from aibackend.settings import PlatformSettings, physical_name

#: Logical name of the keys table (a data table: `functions/authorizer/function.toml`).
KEYS_TABLE = "api-keys"


def local_key_store(
    settings: PlatformSettings, plans: Mapping[str, Plan] | None = None
) -> LocalKeyStore:
    return LocalKeyStore(settings.state_dir / "auth" / "keys.db", plans or DEFAULT_PLANS)


def dev_signing_key(settings: PlatformSettings) -> DevSigningKey:
    return DevSigningKey(settings.state_dir / "auth" / "dev-signing-key.pem")


def key_store(settings: PlatformSettings, plans: Mapping[str, Plan] | None = None) -> KeyLookup:
    """The keys the authorizer reads: SQLite locally, the `api-keys` table on AWS."""
    if settings.adapters == "aws":
        import boto3

        from aibackend.auth.aws import DynamoKeyStore

        return DynamoKeyStore(physical_name("table", KEYS_TABLE), dynamodb=boto3.client("dynamodb"))
    return local_key_store(settings, plans)


def token_verifier(settings: PlatformSettings) -> TokenVerifier | None:
    """The issuer from `AIB_TOKEN_*` (Cognito on AWS); locally the development signing key."""
    configured = TokenSettings.from_env()
    if configured is not None:
        return TokenVerifier(configured)
    if settings.adapters == "aws":
        return None
    return TokenVerifier(dev_signing_key(settings).settings())
