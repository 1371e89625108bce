"""The embeddings model folder: what `aib build embeddings` writes and the server reads.

```
model.onnx              encoder graph: input_ids, attention_mask -> sentence_embedding (L2-normed)
model.json              the model card (sha256 of model.onnx, metrics, ...)
baseline.json           statistics of the reference texts (token counts, top-1 similarity)
tokenizer.json          WordPiece tokenizer (Hugging Face `tokenizers` format)
indexes/<name>.npz      vectors of a document collection embedded at build time (products)
torch/                  the sentence-transformers folder, for the torch backend
```

The registry verifies `model.onnx` against the card's sha256; `model.onnx` in turn carries a
manifest (ONNX metadata `aib.files`: relative path -> sha256) of every other file, so the
card vouches for the whole folder. The server checks the files its backend reads before it
answers `/ping`. On SageMaker the folder arrives as `model.tar.gz`, unpacked in /opt/ml/model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aibackend.embeddings.contract import ModelInfo
from aibackend.errors import ModelLoadError
from aibackend.models.card import MODEL_FILE, ModelCard, check_artifact, sha256_file

#: ONNX metadata keys (`onnx.ModelProto.metadata_props`).
FILES_KEY = "aib.files"
MAX_TOKENS_KEY = "aib.max_tokens"
DIMENSION_KEY = "aib.dimension"

TOKENIZER_FILE = "tokenizer.json"
INDEX_DIR = "indexes"
TORCH_DIR = "torch"
#: The graph's tensors (the card lists them too).
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "sentence_embedding"
#: Where SageMaker unpacks model.tar.gz.
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


@dataclass(frozen=True)
class EncoderArtifact:
    """A verified model folder: its card, the manifest from the graph and the model's shape."""

    folder: Path
    card: ModelCard
    #: Relative path -> sha256 of every file besides the three the registry verifies.
    files: Mapping[str, str] = field(repr=False)
    max_tokens: int
    dimension: int

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.card.name,
            version=self.card.version,
            sha256=self.card.sha256,
            dimension=self.dimension,
            max_tokens=self.max_tokens,
        )

    def path(self, relative: str) -> Path:
        """A file the manifest lists (any other is refused: it is not part of the model)."""
        if relative not in self.files:
            raise ModelLoadError(
                f"{self.folder}: {relative} is not in the model's manifest ({FILES_KEY} in "
                f"{MODEL_FILE}); rebuild the model with `aib build embeddings`"
            )
        return self.folder / relative

    def verify(self, relatives: Iterable[str]) -> None:
        """Check the sha256 of each listed file (the ones a backend is about to read)."""
        for rel in relatives:
            path = self.path(rel)
            if not path.is_file():
                raise ModelLoadError(
                    f"{path}: missing; the model folder is incomplete (unpack the whole "
                    "model.tar.gz, or rebuild with `aib build embeddings`)"
                )
            actual = sha256_file(path)
            if actual != self.files[rel]:
                raise ModelLoadError(
                    f"{path}: sha256 {actual[:12]}... does not match the manifest in "
                    f"{MODEL_FILE} ({self.files[rel][:12]}...); the file was changed or "
                    "truncated: rebuild or re-download the model"
                )

    def under(self, prefix: str) -> list[str]:
        """Manifest entries below a folder, e.g. every file of `torch/`."""
        return sorted(rel for rel in self.files if rel.startswith(f"{prefix}/"))

    def index_names(self) -> list[str]:
        prefix = f"{INDEX_DIR}/"
        return sorted(
            Path(rel).stem for rel in self.files if rel.startswith(prefix) and rel.endswith(".npz")
        )


def index_file(name: str) -> str:
    return f"{INDEX_DIR}/{name}.npz"


def read_artifact(folder: Path, metadata: Mapping[str, str]) -> EncoderArtifact:
    """The folder's card (sha256 of model.onnx checked) and the graph's metadata.

    `metadata` is `session.get_modelmeta().custom_metadata_map` of the loaded graph.
    """
    card = check_artifact(folder)
    missing = [k for k in (FILES_KEY, MAX_TOKENS_KEY, DIMENSION_KEY) if k not in metadata]
    if missing:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: metadata lacks {', '.join(missing)}; this graph was not "
            "written by `aib build embeddings`: rebuild it"
        )
    try:
        files = json.loads(metadata[FILES_KEY])
        max_tokens = int(metadata[MAX_TOKENS_KEY])
        dimension = int(metadata[DIMENSION_KEY])
    except ValueError as e:
        raise ModelLoadError(
            f"{folder / MODEL_FILE}: unreadable aib.* metadata ({e}); rebuild the model"
        ) from e
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise ModelLoadError(f"{folder / MODEL_FILE}: {FILES_KEY} is not a path -> sha256 map")
    return EncoderArtifact(
        folder=folder, card=card, files=files, max_tokens=max_tokens, dimension=dimension
    )


def manifest(folder: Path, exclude: Iterable[str]) -> dict[str, str]:
    """sha256 of every file under `folder` except `exclude` (relative POSIX paths)."""
    skip = set(exclude)
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in skip
    }
