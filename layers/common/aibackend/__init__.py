"""aibackend: the shared library of the serverless AI backend.

Shipped to every function as a Lambda layer. Heavy imports (onnxruntime, boto3, FastAPI) stay
inside the modules that need them so that a function's cold start pays only for what it uses.
"""

__version__ = "0.1.0"
