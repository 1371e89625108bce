"""Bearer tokens for `token` routes: a Cognito user pool that issues OAuth access tokens to
machine clients (client credentials grant), one scope per scope the routes ask for.

The REST API's Lambda authorizer validates those tokens itself (JWKS, issuer, `client_id`,
scopes: `aibackend.auth.tokens`), next to the API key every route needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import aws_cdk as cdk
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.nag import acknowledge

#: Identifier of the resource server: tokens carry scopes as `aib/<scope>`.
RESOURCE_SERVER = "aib"
#: Cognito refuses these words in a domain prefix.
_RESERVED_PREFIX_WORDS = re.compile(r"aws|amazon|cognito")
#: Access tokens live this long; machine clients fetch a new one when it runs out.
ACCESS_TOKEN_VALIDITY = cdk.Duration.minutes(60)


def domain_prefix(stack_name: str, account: str) -> str:
    """`<stack>-<account>`, lowercase, without the words Cognito reserves: stable across
    deploys and unique, since a Cognito domain prefix is global to a region."""
    slug = _RESERVED_PREFIX_WORDS.sub("", stack_name.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-")[:50].strip("-") or "aib"
    return f"{slug}-{account}"


class Identity(Construct):
    """Attributes: `user_pool`, `resource_server`, `machine_client`, `domain`, `issuer` (the
    tokens' `iss`), `token_url` (the OAuth token endpoint)."""

    def __init__(self, scope: Construct, construct_id: str, *, scopes: Iterable[str]) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            # Machine clients only: nobody signs up, nobody signs in with a password.
            self_sign_up_enabled=False,
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=cdk.Duration.days(1),
            ),
            # Should a person ever be added, TOTP is required; no SMS (and no SMS role).
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.NONE,
            # Holds no users and no data: a machine client is re-created with the stack.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.user_pool,
            "COG8",
            "The pool serves machine clients only (client credentials grant, self sign-up off, "
            "no users): the Plus plan's threat protection evaluates user sign-ins, which never "
            "happen here, so it would cost without protecting anything.",
        )
        wanted = sorted(set(scopes))
        server_scopes = {
            s: cognito.ResourceServerScope(
                scope_name=s, scope_description=f"call routes needing {s}"
            )
            for s in wanted
        }
        self.resource_server = self.user_pool.add_resource_server(
            "ResourceServer",
            identifier=RESOURCE_SERVER,
            user_pool_resource_server_name="aibackend API",
            scopes=list(server_scopes.values()),
        )
        self.machine_client = self.user_pool.add_client(
            "MachineClient",
            user_pool_client_name="machine",
            generate_secret=True,
            # No user flows at all (only the refresh token flow, which Cognito always keeps).
            auth_flows=cognito.AuthFlow(user_srp=False),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(client_credentials=True),
                scopes=[
                    cognito.OAuthScope.resource_server(self.resource_server, s)
                    for s in server_scopes.values()
                ],
            ),
            access_token_validity=ACCESS_TOKEN_VALIDITY,
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        # The token endpoint exists only under a domain.
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=domain_prefix(stack.stack_name, stack.account)
            ),
        )
        self.issuer = (
            f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{self.user_pool.user_pool_id}"
        )
        self.token_url = f"{self.domain.base_url()}/oauth2/token"

    def token_environment(self) -> dict[str, str]:
        """`AIB_TOKEN_*` for the authorizer (`aibackend.auth.tokens.TokenSettings.from_env`)."""
        return {
            "AIB_TOKEN_ISSUER": self.issuer,
            # Cognito access tokens name the app client in `client_id` (no `aud`).
            "AIB_TOKEN_AUDIENCES": self.machine_client.user_pool_client_id,
            "AIB_TOKEN_SCOPE_PREFIX": f"{RESOURCE_SERVER}/",
        }
