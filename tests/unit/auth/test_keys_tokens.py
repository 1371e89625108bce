"""API keys are stored hashed; tokens are checked for signature, issuer, audience, expiry."""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from pathlib import Path

import jwt
import pytest

from aibackend.auth.keys import KEY_PREFIX, LocalKeyStore, hash_key
from aibackend.auth.plans import DEFAULT_PLANS
from aibackend.auth.tokens import DevSigningKey, TokenError, TokenSettings, TokenVerifier
from aibackend.errors import ConfigError


def test_only_the_hash_of_a_key_is_stored(tmp_path: Path) -> None:
    # GIVEN a new key
    store = LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS)
    key, secret = store.create("checkout", "standard")
    store.close()
    # THEN the secret is long and recognisable, and the database holds its hash, never it
    assert secret.startswith(KEY_PREFIX) and len(secret) >= 40
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw
    assert hash_key(secret).encode() in raw
    # AND a lookup by the secret finds the key (and a near miss finds nothing)
    store = LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS)
    found = store.lookup(secret)
    assert found is not None and (found.key_id, found.plan) == (key.key_id, "standard")
    assert store.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None


def test_an_unknown_plan_or_key_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS)
    with pytest.raises(ConfigError, match="unknown plan 'gold'; plans: dev, free, standard"):
        store.create("x", "gold")
    with pytest.raises(ConfigError, match="no API key 'ak_nope'"):
        store.revoke("ak_nope")


def test_revoking_is_recorded_and_idempotent(tmp_path: Path) -> None:
    store = LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS)
    key, secret = store.create("x", "free")
    first = store.revoke(key.key_id)
    assert first.revoked_at is not None
    assert store.revoke(key.key_id).revoked_at == first.revoked_at
    found = store.lookup(secret)
    assert found is not None and found.revoked


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> DevSigningKey:
    return DevSigningKey(tmp_path_factory.mktemp("issuer") / "key.pem")


def test_the_development_key_is_private_and_stable(tmp_path: Path) -> None:
    a = DevSigningKey(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert DevSigningKey(tmp_path / "k.pem").kid == a.kid  # reloaded, not regenerated


def test_a_development_token_verifies_with_its_scopes(signer: DevSigningKey) -> None:
    claims = TokenVerifier(signer.settings()).verify(signer.issue("bob", ["predict:fraud"]))
    assert (claims.subject, claims.scopes) == ("bob", frozenset({"predict:fraud"}))


def test_a_cognito_access_token_is_read_by_client_id_and_prefixed_scopes(
    signer: DevSigningKey,
) -> None:
    # GIVEN a token shaped like a Cognito client-credentials access token: no `aud`, the app
    # client in `client_id`, resource-server scopes `aib/<scope>` (and one of another server)
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
            "sub": "7f2c",
            "client_id": "client123",
            "token_use": "access",
            "scope": "aib/predict:fraud other/read:x",
            "iat": now,
            "exp": now + 600,
        },
        signer._key,
        algorithm="RS256",
        headers={"kid": signer.kid},
    )
    settings = TokenSettings(
        issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
        audiences=frozenset({"client123"}),
        jwks=signer.jwks(),
        scope_prefix="aib/",
    )
    # THEN the client is the audience and only this API's scopes count, without the prefix
    claims = TokenVerifier(settings).verify(token)
    assert claims.scopes == frozenset({"predict:fraud"})


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda s: s.issue("x", ["a:b"], ttl_s=10, now=time.time() - 100), "has expired"),
        (lambda s: s.issue("x", ["a:b"], audience="elsewhere"), "is for ['elsewhere']"),
        (lambda s: s.issue("x", ["a:b"], issuer="someone-else"), "was not issued by aib-dev"),
        (lambda s: "not-a-jwt", "is not a JWT"),
        (
            lambda s: jwt.encode({"sub": "x"}, key="", algorithm="none", headers={"kid": s.kid}),
            "algorithm 'none' is not accepted",
        ),
        (
            lambda s: jwt.encode(
                {"iss": "aib-dev", "aud": "aibackend", "sub": "x", "exp": time.time() + 60},
                "a-shared-secret-of-at-least-32-bytes!!",
                algorithm="HS256",
                headers={"kid": s.kid},
            ),
            "algorithm 'HS256' is not accepted",
        ),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "garbage", "alg-none", "alg-hs256"],
)
def test_bad_tokens_are_refused_with_a_reason(signer: DevSigningKey, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        TokenVerifier(signer.settings()).verify(make(signer))


def test_a_remembered_token_still_expires(
    signer: DevSigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a token that verified once (and is remembered)
    verifier = TokenVerifier(signer.settings())
    token = signer.issue("x", ["a:b"], ttl_s=60)
    assert verifier.verify(token).subject == "x"
    # WHEN its expiry (plus the leeway) has passed  THEN it is refused, not served from memory
    later = time.time() + 60 + verifier.settings.leeway_s + 1

    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            return datetime.fromtimestamp(later, tz)

    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)  # PyJWT's own clock
    with pytest.raises(TokenError, match="has expired"):
        verifier.verify(token)


def test_a_revocation_from_another_process_is_seen_within_the_refresh_interval(
    tmp_path: Path,
) -> None:
    # GIVEN the gateway's store, which has looked the key up (and remembers it)
    gateway = LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS, refresh_s=0.05)
    key, secret = gateway.create("x", "free")
    assert not gateway.lookup(secret).revoked  # type: ignore[union-attr]
    # WHEN `aib keys revoke` revokes it through its own connection
    LocalKeyStore(tmp_path / "keys.db", DEFAULT_PLANS).revoke(key.key_id)
    # THEN once the refresh interval has passed, the gateway sees the revocation
    time.sleep(0.06)
    assert gateway.lookup(secret).revoked  # type: ignore[union-attr]
