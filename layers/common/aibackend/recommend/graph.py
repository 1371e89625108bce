"""The scoring of `scorer.ItemScorer` as an ONNX graph, built with `onnx.helper` (training only).

    history [batch, items] ──MatMul(fold)──> user_vector [batch, factors]
        ──MatMul(embeddings_t)──> affinity [batch, items]
        ──Where(history > 0, -inf)──> unseen                     (mask what was seen)
        ──Where(sum(history) > 0, unseen, popularity)──> ranking   (empty history: popularity)
        ──TopK(top_k)──> scores [batch, top_k], items [batch, top_k] (int64 item indices)

Every operator here has kept its signature since opset 13; `OPSET` 17 loads on any
onnxruntime the serving layer allows (>= 1.18).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aibackend.recommend.scorer import MASKED, ItemScorer

OPSET = 17
#: onnxruntime 1.18 reads IR version 10 at most.
IR_VERSION = 9
INPUT = "history"
OUTPUTS = ("scores", "items")


def build_graph(scorer: ItemScorer, metadata: Mapping[str, str] | None = None) -> Any:
    """The `onnx.ModelProto` of `scorer`, with `metadata` as its metadata_props."""
    from onnx import TensorProto, helper, numpy_helper

    n, k = scorer.items, scorer.top_k
    consts = [
        numpy_helper.from_array(scorer.fold.astype(np.float32), "item_fold"),
        numpy_helper.from_array(
            np.ascontiguousarray(scorer.embeddings.T, dtype=np.float32), "item_embeddings_t"
        ),
        numpy_helper.from_array(scorer.popularity.astype(np.float32)[None, :], "popularity"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(MASKED, dtype=np.float32), "masked"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "item_axis"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "top_k"),
    ]
    nodes = [
        helper.make_node("MatMul", [INPUT, "item_fold"], ["user_vector"]),
        helper.make_node("MatMul", ["user_vector", "item_embeddings_t"], ["affinity"]),
        helper.make_node("Greater", [INPUT, "zero"], ["seen"]),
        helper.make_node("Where", ["seen", "masked", "affinity"], ["unseen"]),
        helper.make_node("ReduceSum", [INPUT, "item_axis"], ["history_total"], keepdims=1),
        helper.make_node("Greater", ["history_total", "zero"], ["personalized"]),
        helper.make_node("Where", ["personalized", "unseen", "popularity"], ["ranking"]),
        helper.make_node("TopK", ["ranking", "top_k"], list(OUTPUTS), axis=1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "recommendations",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", n])],
        [
            helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.INT64, ["batch", k]),
        ],
        initializer=consts,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="aibackend"
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, dict(metadata or {}))
    return model
