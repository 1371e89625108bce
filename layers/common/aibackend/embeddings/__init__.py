"""Sentence embeddings and semantic product search: the heavy tier.

The model (all-MiniLM-L6-v2, exported to ONNX by `aib build embeddings`) is served by a
SageMaker-contract inference server (`server`: `GET /ping`, `POST /invocations`), on a
SageMaker endpoint on AWS and as a loopback process of `aib dev` locally. Lambda functions
reach it through `client` (retries with backoff and jitter, a circuit breaker) and never load
the model themselves.
"""
