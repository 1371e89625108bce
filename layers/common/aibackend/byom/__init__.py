"""Bring your own model: train one from a CSV or import an ONNX file, and serve it.

- `aib model train --csv FILE --target COLUMN` infers a schema from a messy CSV, trains a
  scikit-learn pipeline as a SageMaker-style entry point (`byom.training`, never shipped to
  Lambda), exports it to ONNX with the preprocessing inside the graph, registers and promotes it.
- `aib model import --onnx FILE --schema FILE` registers a graph trained elsewhere.
- Either way `functions/<name>/` is scaffolded: a `function.toml` and a two-line handler that
  reuses the one generic service (`byom.service.build_handler`), whose request schema is built
  from the model card when the function starts.

Runtime modules (shipped in the common layer): `contract` (card <-> graph), `api` (request and
response models), `runtime` (loading), `service` (FastAPI + Mangum). CLI-side: `names`,
`scaffold`, `importer`, `cli`.
"""


def route_prefix(name: str) -> str:
    """Where model `name`'s routes live: `/v1/models/<name>`."""
    return f"/v1/models/{name}"
