"""The `/v2` response: a risk band and a three-way decision per transaction (same model, same
input contract as `/v1`). Typed in, typed out; no HTTP, no AWS.

Its cut-offs come from function.toml `[environment]` and are validated at load:
`FRAUD_RISK_MEDIUM_AT` < `FRAUD_RISK_HIGH_AT` split scores into low / medium / high bands;
`FRAUD_REVIEW_THRESHOLD` < `FRAUD_THRESHOLD` split them into approve / review / decline.
`FRAUD_THRESHOLD` is v1's decline threshold: both versions decline the same transactions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aibackend.errors import ConfigError
from aibackend.fraud.schema import Transaction
from aibackend.models.runtime import LoadedModel
from aibackend.serving import Envelope, Prediction, inference_id, model_ref

from .scoring import probabilities

Band = Literal["low", "medium", "high"]
Action = Literal["approve", "review", "decline"]
Cut = Annotated[float, Field(gt=0, lt=1)]

#: Policy field -> the `[environment]` variable it is read from.
ENVIRONMENT = {
    "medium_at": "FRAUD_RISK_MEDIUM_AT",
    "high_at": "FRAUD_RISK_HIGH_AT",
    "review_at": "FRAUD_REVIEW_THRESHOLD",
    "decline_at": "FRAUD_THRESHOLD",
}


class RiskPolicy(BaseModel):
    """The cut-offs v2 applies; each is the lowest score that reaches its band or action."""

    model_config = ConfigDict(frozen=True)

    medium_at: Annotated[Cut, Field(description="Scores from here are `medium` risk")] = 0.2
    high_at: Annotated[Cut, Field(description="Scores from here are `high` risk")] = 0.5
    review_at: Annotated[Cut, Field(description="Scores from here go to manual `review`")] = 0.3
    decline_at: Annotated[Cut, Field(description="Scores from here are declined (as v1)")] = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> RiskPolicy:
        if self.medium_at >= self.high_at:
            raise ValueError(
                f"FRAUD_RISK_MEDIUM_AT ({self.medium_at}) must be below "
                f"FRAUD_RISK_HIGH_AT ({self.high_at})"
            )
        if self.review_at >= self.decline_at:
            raise ValueError(
                f"FRAUD_REVIEW_THRESHOLD ({self.review_at}) must be below "
                f"FRAUD_THRESHOLD ({self.decline_at})"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RiskPolicy:
        env = os.environ if env is None else env
        raw = {field: env[var] for field, var in ENVIRONMENT.items() if var in env}
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                (f"{ENVIRONMENT[str(err['loc'][0])]}: " if err["loc"] else "")
                + err["msg"].removeprefix("Value error, ")
                for err in e.errors()
            )
            raise ConfigError(
                f"invalid v2 risk policy (function.toml [environment]): {problems}"
            ) from e

    def band(self, score: float) -> Band:
        return "high" if score >= self.high_at else "medium" if score >= self.medium_at else "low"

    def decide(self, score: float) -> FraudDecision:
        if score >= self.decline_at:
            return FraudDecision(action="decline", threshold=self.decline_at)
        if score >= self.review_at:
            return FraudDecision(action="review", threshold=self.review_at)
        return FraudDecision(action="approve", threshold=self.review_at)


class FraudRisk(BaseModel):
    score: Annotated[float, Field(ge=0, le=1, description="Probability of fraud")]
    band: Annotated[Band, Field(description="`policy.medium_at` and `policy.high_at` split bands")]


class FraudDecision(BaseModel):
    action: Action
    threshold: Annotated[
        float,
        Field(
            description="The cut-off that decided: the threshold the score reached for "
            "`decline` and `review`; the review threshold it stayed below for `approve`"
        ),
    ]


class ScoredTransaction(Prediction):
    transaction_id: str | None
    risk: FraudRisk
    decision: FraudDecision


class ScoreResponseV2(Envelope):
    policy: RiskPolicy
    results: list[ScoredTransaction]


def score_v2(
    txns: list[Transaction], model: LoadedModel, policy: RiskPolicy, request_id: str
) -> ScoreResponseV2:
    """Score a batch in one `session.run`; band and decision from the policy's cut-offs."""
    results = []
    for txn, p in zip(txns, probabilities(txns, model), strict=True):
        s = float(p)
        results.append(
            ScoredTransaction(
                inference_id=inference_id(),
                transaction_id=txn.transaction_id,
                risk=FraudRisk(score=s, band=policy.band(s)),
                decision=policy.decide(s),
            )
        )
    return ScoreResponseV2(
        request_id=request_id,
        model=model_ref(model),
        policy=policy,
        results=results,
    )
