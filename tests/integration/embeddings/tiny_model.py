"""A tiny but real embeddings model folder, for tests without torch.

The graph is what the build exports, shrunk: token embeddings (a seeded random table, 16
dimensions, over a vocabulary of the catalog's and the queries' words) -> mean over the
attention mask -> L2 normalization; the tokenizer is a real BERT WordPiece `tokenizer.json`.
It goes through the build step's own `finish_folder` (index, evaluation, manifest, card) and
`register_folder`, so the server, `aib dev` and the functions run exactly as with MiniLM.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aibackend.embeddings.artifact import ATTENTION_MASK, INPUT_IDS, OUTPUT, TOKENIZER_FILE
from aibackend.embeddings.build import Described, finish_folder, raw_encoder, register_folder
from aibackend.embeddings.evaluation import words
from aibackend.embeddings.products import load_products, load_queries
from aibackend.models.card import MODEL_FILE
from aibackend.ports import ModelVersion
from aibackend.settings import PlatformSettings

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DIMENSION = 16
MAX_TOKENS = 32


def vocabulary() -> list[str]:
    texts = [p.text for p in load_products()] + [q.query for q in load_queries()]
    return [*SPECIALS, *sorted({w for t in texts for w in words(t)})]


def write_tokenizer(path: Path, vocab: list[str]) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.save(str(path))


def write_graph(path: Path, vocab_size: int, *, seed: int = 5) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(seed).normal(size=(vocab_size, DIMENSION)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", INPUT_IDS], ["tokens"]),
        helper.make_node("Cast", [ATTENTION_MASK], ["mask2d"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask2d", "last"], ["mask"]),
        helper.make_node("Mul", ["tokens", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "one"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "tiny"], ["safe"]),
        helper.make_node("Div", ["total", "safe"], ["mean"]),
        helper.make_node("LpNormalization", ["mean"], [OUTPUT], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", DIMENSION])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
            numpy_helper.from_array(np.array([1e-9], dtype=np.float32), "tiny"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def build_tiny_embeddings(folder: Path) -> Path:
    """A sealed model folder (graph, tokenizer, products index, card, baseline)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    write_tokenizer(folder / TOKENIZER_FILE, vocab)
    write_graph(folder / MODEL_FILE, len(vocab))
    encode, count = raw_encoder(folder, MAX_TOKENS)
    finish_folder(
        folder,
        encode=encode,
        count_tokens=count,
        max_tokens=MAX_TOKENS,
        described=Described(
            name="embeddings",
            algorithm="tiny test encoder: random token embeddings, mean pooling",
            description="A test double with the real model's contract; meaningless vectors.",
            hyperparameters={"dimension": DIMENSION},
            weights="random (seeded), tests only",
        ),
        echo=lambda _line: None,
    )
    return folder


def register_tiny_embeddings(state_dir: Path, *, promote: bool = True) -> ModelVersion:
    """Build the tiny model and register it as `embeddings` in `state_dir`'s registry."""
    folder = build_tiny_embeddings(state_dir / "tiny-embeddings-build")
    return register_folder(
        folder, PlatformSettings(state_dir=state_dir), promote=promote, echo=lambda _l: None
    )
