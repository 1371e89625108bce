"""One small exception hierarchy for the whole backend.

Logic raises these; the edges (HTTP app, queue handlers, CLI) translate them into problem
responses, failed batch items or exit codes.
"""

from __future__ import annotations


class AibError(Exception):
    """Base class of every error the backend raises on purpose."""

    #: HTTP status the edge maps this error to.
    status: int = 500
    #: Short, stable title for `application/problem+json`.
    title: str = "Internal error"


class ConfigError(AibError):
    """A declaration or setting is wrong; the message says which file/field and how to fix it."""

    title = "Configuration error"


class NotFoundError(AibError):
    status = 404
    title = "Not found"


class ObjectNotFoundError(NotFoundError):
    title = "Object not found"


class ModelNotFoundError(NotFoundError):
    title = "Model not found"


class InvalidKeyError(AibError):
    """An object key that could escape its bucket or is otherwise unusable."""

    status = 400
    title = "Invalid object key"


class ModelLoadError(AibError):
    """A model version cannot be served (missing file, checksum mismatch, bad schema...)."""

    status = 503
    title = "Model unavailable"
