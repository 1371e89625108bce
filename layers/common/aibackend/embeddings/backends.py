"""Run the encoder: onnxruntime (CUDA when the build has it, else CPU) or torch.

`AIB_EMBEDDINGS_BACKEND` picks one (`onnx`, the default, or `torch`). Both take one batch of
texts (the batcher keeps batches at `MAX_BATCH`) and return L2-normalized float32 vectors and
each text's word-piece count. Heavy imports (onnxruntime, tokenizers, torch) happen when a
backend is loaded, not when this module is imported.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from aibackend.embeddings.artifact import (
    ATTENTION_MASK,
    INPUT_IDS,
    OUTPUT,
    TOKENIZER_FILE,
    TORCH_DIR,
    EncoderArtifact,
    read_artifact,
)
from aibackend.errors import ConfigError, ModelLoadError
from aibackend.models.card import MODEL_FILE

log = logging.getLogger("aib.embeddings")

BackendKind = Literal["onnx", "torch"]
BACKENDS: tuple[BackendKind, ...] = ("onnx", "torch")
BACKEND_ENV = "AIB_EMBEDDINGS_BACKEND"
#: Intra-op threads of the CPU session; 0 lets onnxruntime use every physical core.
THREADS_ENV = "AIB_EMBEDDINGS_THREADS"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Encoded:
    """One batch: `vectors` (n, dimension) float32, unit length; `tokens` per text."""

    vectors: np.ndarray
    tokens: list[int]


class Backend(Protocol):
    artifact: EncoderArtifact

    @property
    def device(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> Encoded: ...


def optional_module(name: str, hint: str) -> Any:
    """Import a package that only some installs have (untyped here on purpose: mypy runs
    where torch and tokenizers may be missing); `ModelLoadError(hint)` when it is absent."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ModelLoadError(hint) from e


class WordPieces:
    """The model's WordPiece tokenizer, truncating like sentence-transformers does.

    Texts are tokenized whole (so the response can say how long each really was) and then cut
    to `max_tokens` pieces: the first `max_tokens - 1` and the closing [SEP].
    """

    def __init__(self, path: Path, max_tokens: int) -> None:
        tokenizers = optional_module(
            "tokenizers", "the `tokenizers` package is missing: pip install tokenizers"
        )
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path))
        # tokenizer.json files often carry a fixed padding and truncation; the batch decides.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = max_tokens
        sep = self.tokenizer.token_to_id("[SEP]")
        pad = self.tokenizer.token_to_id("[PAD]")
        if sep is None or pad is None:
            raise ModelLoadError(f"{path}: a BERT WordPiece tokenizer needs [SEP] and [PAD]")
        self.sep_id, self.pad_id = sep, pad

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(input_ids, attention_mask) int64, padded to the longest text, and the counts."""
        encodings = self.tokenizer.encode_batch(list(texts))
        counts = [len(e.ids) for e in encodings]
        width = min(max(counts), self.max_tokens)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            pieces = e.ids if len(e.ids) <= width else [*e.ids[: width - 1], self.sep_id]
            ids[row, : len(pieces)] = pieces
            mask[row, : len(pieces)] = 1
        return ids, mask, counts


def onnx_session(path: Path, *, threads: int = 0) -> Any:
    """A session on CUDA when this onnxruntime build offers it, else on the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = [CUDA, CPU] if CUDA in available else [CPU]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises untyped errors
        raise ModelLoadError(
            f"{path}: onnxruntime {ort.__version__} cannot load the graph ({e}); rebuild it "
            "with `aib build embeddings`"
        ) from e


class OnnxBackend:
    """The exported graph under onnxruntime; tokenization by `tokenizers` (Rust)."""

    def __init__(self, folder: Path, *, threads: int = 0) -> None:
        self.session = onnx_session(folder / MODEL_FILE, threads=threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.artifact = read_artifact(folder, meta)
        self.artifact.verify([TOKENIZER_FILE])
        names = {i.name for i in self.session.get_inputs()}
        if names != {INPUT_IDS, ATTENTION_MASK}:
            raise ModelLoadError(
                f"{folder / MODEL_FILE}: inputs are {sorted(names)}, expected "
                f"{INPUT_IDS} and {ATTENTION_MASK}; rebuild with `aib build embeddings`"
            )
        self.tokenize = WordPieces(folder / TOKENIZER_FILE, self.artifact.max_tokens)

    @property
    def device(self) -> str:
        return "cuda" if CUDA in self.session.get_providers() else "cpu"

    def encode(self, texts: Sequence[str]) -> Encoded:
        ids, mask, counts = self.tokenize(texts)
        (vectors,) = self.session.run([OUTPUT], {INPUT_IDS: ids, ATTENTION_MASK: mask})
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), tokens=counts)


class TorchBackend:
    """sentence-transformers' modules on the GPU (or the CPU without one), from the folder's
    `torch/`.

    A batch is tokenized once, by the same `WordPieces` as the ONNX backend (which also gives
    each text's count), and run through the model's modules (transformer, mean pooling,
    normalization) under `inference_mode`: `SentenceTransformer.encode` would tokenize it a
    second time and sort, split and collect it again. The artifact's manifest is read from
    model.onnx's metadata (one CPU session, at start).
    """

    def __init__(self, folder: Path) -> None:
        meta = onnx_session(folder / MODEL_FILE).get_modelmeta().custom_metadata_map
        self.artifact = read_artifact(folder, meta)
        weights = self.artifact.under(TORCH_DIR)
        if not weights:
            raise ModelLoadError(
                f"{folder}: no {TORCH_DIR}/ files in the manifest; this model was built "
                "without the sentence-transformers folder: use AIB_EMBEDDINGS_BACKEND=onnx"
            )
        self.artifact.verify([TOKENIZER_FILE, *weights])
        hint = (
            "AIB_EMBEDDINGS_BACKEND=torch needs torch and sentence-transformers in the image "
            "(build it with --build-arg WITH_TORCH=1), or use the onnx backend"
        )
        self._torch = torch = optional_module("torch", hint)
        st = optional_module("sentence_transformers", hint)
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = st.SentenceTransformer(str(folder / TORCH_DIR), device=self._device)
        self.model.max_seq_length = self.artifact.max_tokens
        self.model.eval()
        self.tokenize = WordPieces(folder / TOKENIZER_FILE, self.artifact.max_tokens)

    @property
    def device(self) -> str:
        return self._device

    def encode(self, texts: Sequence[str]) -> Encoded:
        ids, mask, counts = self.tokenize(texts)
        torch = self._torch
        with torch.inference_mode():
            features = {
                "input_ids": torch.from_numpy(ids).to(self._device),
                "attention_mask": torch.from_numpy(mask).to(self._device),
            }
            pooled = self.model(features)["sentence_embedding"]
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
            vectors = unit.to(device="cpu", dtype=torch.float32).numpy()
        return Encoded(vectors=vectors, tokens=counts)


def backend_kind(env: dict[str, str] | None = None) -> BackendKind:
    raw = (os.environ if env is None else env).get(BACKEND_ENV, "onnx").strip().lower()
    if raw not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV}={raw!r}: choose one of {', '.join(BACKENDS)}")
    return raw


def load_backend(folder: Path, kind: BackendKind = "onnx", *, threads: int = 0) -> Backend:
    """Load and verify the model folder with the chosen backend."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"{folder}: no model folder; on SageMaker it is model.tar.gz unpacked in "
            "/opt/ml/model, locally build one with `make embeddings`"
        )
    backend: Backend = (
        OnnxBackend(folder, threads=threads) if kind == "onnx" else TorchBackend(folder)
    )
    info = backend.artifact.info()
    log.info(
        "loaded %s v%s (%s, %d dimensions) with the %s backend on %s",
        info.name,
        info.version,
        info.sha256[:12],
        info.dimension,
        kind,
        backend.device,
    )
    return backend
