"""Bearer tokens: JWTs checked against a JWKS (signature, issuer, audience, expiry) and read
for scopes.

On AWS the issuer is the Cognito user pool (`https://cognito-idp.<region>.amazonaws.com/<id>`,
keys at `<issuer>/.well-known/jwks.json`); its access tokens name the app client in
`client_id` instead of `aud`, and carry resource-server scopes as `<server>/<scope>` in a
space-separated `scope` claim. Locally `aib dev` signs with a development key of its own
(`DevSigningKey`) and serves its JWKS at `/.well-known/jwks.json`. One verifier reads both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

#: Local development tokens: issuer and audience (`aib token`, `aib dev`).
DEV_ISSUER = "aib-dev"
DEV_AUDIENCE = "aibackend"


#: Verified tokens remembered per verifier (then the memory starts over).
_REMEMBERED = 4096


class TokenError(Exception):
    """A token that must be refused; the message says why, in words a client can act on."""


@dataclass(frozen=True)
class Claims:
    subject: str
    scopes: frozenset[str]
    expires_at: int


@dataclass(frozen=True)
class TokenSettings:
    """What a valid token looks like here.

    `audiences`: accepted `aud` values, or Cognito app client ids (`client_id`). `scope_prefix`:
    a Cognito resource server's `<identifier>/`; scopes without it are ignored.
    """

    issuer: str
    audiences: frozenset[str]
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None
    scope_prefix: str = ""
    leeway_s: int = 30
    algorithms: tuple[str, ...] = ("RS256",)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenSettings | None:
        """`AIB_TOKEN_ISSUER`, `AIB_TOKEN_AUDIENCES` (comma-separated), `AIB_TOKEN_JWKS_URL`,
        `AIB_TOKEN_SCOPE_PREFIX`; None when no issuer is configured (no token routes)."""
        env = os.environ if env is None else env
        issuer = env.get("AIB_TOKEN_ISSUER")
        if not issuer:
            return None
        return cls(
            issuer=issuer,
            audiences=frozenset(a for a in env.get("AIB_TOKEN_AUDIENCES", "").split(",") if a),
            jwks_url=env.get("AIB_TOKEN_JWKS_URL") or f"{issuer.rstrip('/')}/.well-known/jwks.json",
            scope_prefix=env.get("AIB_TOKEN_SCOPE_PREFIX", ""),
        )


@dataclass
class TokenVerifier:
    settings: TokenSettings
    _client: jwt.PyJWKClient | None = field(default=None, init=False, repr=False)
    _keys: jwt.PyJWKSet | None = field(default=None, init=False, repr=False)
    _verified: dict[str, Claims] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.settings.jwks is not None:
            self._keys = jwt.PyJWKSet.from_dict(dict(self.settings.jwks))
        elif self.settings.jwks_url:
            # Keys are fetched on first use and cached per container; an unknown `kid`
            # (a rotated key) refetches.
            self._client = jwt.PyJWKClient(self.settings.jwks_url, cache_keys=True, lifespan=3600)
        else:
            raise ValueError("TokenSettings needs jwks or jwks_url")

    def _key(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenError(f"the bearer token is not a JWT ({e})") from e
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("the bearer token's header names no key id (kid)")
        if header.get("alg") not in self.settings.algorithms:
            raise TokenError(
                f"token algorithm {header.get('alg')!r} is not accepted "
                f"(accepted: {', '.join(self.settings.algorithms)})"
            )
        try:
            if self._client is not None:
                return self._client.get_signing_key(kid).key
            assert self._keys is not None
            return self._keys[kid].key
        except (KeyError, jwt.PyJWKClientError) as e:
            raise TokenError(f"token key id {kid!r} is not in the issuer's key set") from e

    def verify(self, token: str) -> Claims:
        """The token's claims, or `TokenError` saying why it is refused.

        A token that verified once is remembered (by its exact text, signature included) until
        it expires: a client reuses its token for many requests, and an RSA signature check
        costs more than the rest of the decision together.
        """
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + self.settings.leeway_s:
                return known
            del self._verified[token]
        claims = self._verify(token)
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> Claims:
        s = self.settings
        key = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(s.algorithms),
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenError("the bearer token has expired; get a new one") from e
        except jwt.InvalidIssuerError as e:
            raise TokenError(f"the bearer token was not issued by {s.issuer}") from e
        except jwt.InvalidSignatureError as e:
            raise TokenError("the bearer token's signature does not verify") from e
        except jwt.MissingRequiredClaimError as e:
            raise TokenError(f"the bearer token lacks the {e.claim!r} claim") from e
        except jwt.PyJWTError as e:
            raise TokenError(f"the bearer token is invalid: {e}") from e
        audiences = claims.get("aud", claims.get("client_id"))
        presented = {audiences} if isinstance(audiences, str) else set(audiences or ())
        if not presented & s.audiences:
            raise TokenError(
                f"the bearer token is for {sorted(presented) or 'no audience'}, not for this API "
                f"({', '.join(sorted(s.audiences))})"
            )
        raw = claims.get("scope", "")
        names = raw.split() if isinstance(raw, str) else [str(x) for x in raw]
        scopes = frozenset(
            n.removeprefix(s.scope_prefix) for n in names if n.startswith(s.scope_prefix)
        )
        return Claims(subject=str(claims["sub"]), scopes=scopes, expires_at=int(claims["exp"]))


class DevSigningKey:
    """The local issuer: an RSA key in `<state>/auth/dev-signing-key.pem` (mode 0600), made on
    first use. Never used on AWS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path}: not an RSA private key; delete it to make a new one")
            self._key = loaded
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            tmp.replace(path)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        self.kid = _thumbprint(jwk)
        self._jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwk]}

    def settings(self) -> TokenSettings:
        return TokenSettings(
            issuer=DEV_ISSUER, audiences=frozenset({DEV_AUDIENCE}), jwks=self.jwks()
        )

    def issue(
        self,
        subject: str,
        scopes: list[str] | tuple[str, ...],
        *,
        ttl_s: int = 3600,
        audience: str = DEV_AUDIENCE,
        issuer: str = DEV_ISSUER,
        now: float | None = None,
    ) -> str:
        iat = int(time.time() if now is None else now)
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": iat,
            "exp": iat + ttl_s,
            "scope": " ".join(scopes),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256 of the required members), first 16 characters."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]
