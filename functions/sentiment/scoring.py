"""Sentiment logic: typed in, typed out; no HTTP, no AWS."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aibackend.sentiment.model import LABELS, Label, TextClassifier
from aibackend.serving import Envelope, Prediction, inference_id, model_ref

MAX_TEXTS = 100
MAX_CHARS = 5000
#: What a text must contain: one character that is not whitespace.
NOT_BLANK = r"\S"


def _not_blank(text: str) -> str:
    """Refuse text with no character to read. (Unpaired surrogates, which onnxruntime cannot
    encode, never get here: pydantic refuses them as invalid strings.)"""
    if re.search(NOT_BLANK, text) is None:
        raise ValueError("is blank: send text with at least one character that is not a space")
    return text


Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_CHARS,
        # Documented for clients and fuzzers; enforced, with a message, by `_not_blank`.
        json_schema_extra={"pattern": NOT_BLANK},
        description=f"A review text, 1 to {MAX_CHARS:,} characters, not only whitespace",
    ),
    AfterValidator(_not_blank),
]


class SentimentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"texts": ["The battery lasts all week.", "It broke after a day."]}]
        },
    )

    texts: Annotated[
        list[Text],
        Field(
            min_length=1,
            max_length=MAX_TEXTS,
            description=f"1 to {MAX_TEXTS} texts, answered in the same order",
        ),
    ]


Probability = Annotated[float, Field(ge=0, le=1)]


class ClassProbabilities(BaseModel):
    negative: Probability
    positive: Probability


class Sentiment(Prediction):
    label: Annotated[Label, Field(description="The more probable class")]
    probability: Annotated[Probability, Field(description="Probability of `label`")]
    probabilities: ClassProbabilities


class SentimentResponse(Envelope):
    results: list[Sentiment]


def classify(texts: list[str], model: TextClassifier, request_id: str) -> SentimentResponse:
    """Classify a batch in one `session.run`; results in input order.

    The model's probability columns are `LABELS`, in that order (checked when it loads).
    """
    probs = model.predict_proba(texts)
    results = []
    for negative, positive in probs.tolist():
        label: Label = LABELS[1] if positive > negative else LABELS[0]
        results.append(
            Sentiment(
                inference_id=inference_id(),
                label=label,
                probability=max(negative, positive),
                probabilities=ClassProbabilities(negative=negative, positive=positive),
            )
        )
    return SentimentResponse(request_id=request_id, model=model_ref(model), results=results)
