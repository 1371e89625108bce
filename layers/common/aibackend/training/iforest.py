"""A fitted scikit-learn `IsolationForest` as one compact ONNX graph.

skl2onnx converts an isolation forest tree by tree: each tree gets its own
`TreeEnsembleRegressor` for the leaf, then label encoders and arithmetic for the path length,
about 25 nodes per tree (2,511 nodes for the 100 trees of the IoT models). onnxruntime runs
them one after another, about 0.8 ms for one reading on this machine, which made the forest
the largest single cost of the real-time stream.

The score only needs one number per leaf. scikit-learn's path length of a sample in a tree is
`depth(leaf) + c(n_samples(leaf))` (c: the average path length of an unsuccessful search in a
binary search tree of n points, the correction for the unbuilt subtree below a leaf), so this
graph is one `TreeEnsembleRegressor` holding every tree, each leaf weighted with its path
length and summed, then

    score_samples = -2 ** (-(sum of path lengths) / (n_trees * c(max_samples)))
    scores        = score_samples - offset_                 (`decision_function`, shape [N, 1])
    label         = 1 where scores >= 0, else -1            (`predict`, shape [N])

the same outputs, names and shapes as skl2onnx's graph. `training.common.export_checked` still
runs it against scikit-learn's `decision_function` before anything is written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: What `Exported.converter` and the graph's `producer_name` record for these graphs.
CONVERTER = __name__


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) for each leaf size n (scikit-learn's `_average_path_length`)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


def _depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Depth of every node (the root is 0), from the children arrays of a fitted tree."""
    depth = np.zeros(len(left), dtype=np.float64)
    for node in range(len(left)):  # children always come after their parent
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return depth


def isolation_forest_onnx(
    forest: Any, n_features: int, *, input_name: str, opset: int, ml_opset: int
) -> bytes:
    """The fitted `forest` as ONNX bytes (see the module docs)."""
    from onnx import TensorProto, helper

    features_of_tree = (
        forest.estimators_features_
        if forest._max_features != n_features
        else [np.arange(n_features)] * len(forest.estimators_)
    )
    tree_ids: list[int] = []
    node_ids: list[int] = []
    feature_ids: list[int] = []
    thresholds: list[float] = []
    modes: list[str] = []
    true_ids: list[int] = []
    false_ids: list[int] = []
    leaf_tree: list[int] = []
    leaf_node: list[int] = []
    leaf_weight: list[float] = []
    for t, (estimator, features) in enumerate(
        zip(forest.estimators_, features_of_tree, strict=True)
    ):
        tree = estimator.tree_
        left, right = tree.children_left, tree.children_right
        path = _depths(left, right) + average_path_length(tree.n_node_samples)
        for node in range(tree.node_count):
            tree_ids.append(t)
            node_ids.append(node)
            if left[node] < 0:
                modes.append("LEAF")
                feature_ids.append(0)
                thresholds.append(0.0)
                true_ids.append(0)
                false_ids.append(0)
                leaf_tree.append(t)
                leaf_node.append(node)
                leaf_weight.append(float(path[node]))
            else:
                # scikit-learn goes left when x[feature] <= threshold (float32 comparison)
                modes.append("BRANCH_LEQ")
                feature_ids.append(int(features[tree.feature[node]]))
                thresholds.append(float(tree.threshold[node]))
                true_ids.append(int(left[node]))
                false_ids.append(int(right[node]))

    denominator = len(forest.estimators_) * float(
        average_path_length(np.array([forest._max_samples]))[0]
    )
    if denominator == 0:  # one training sample: scikit-learn scores everything 1
        denominator = math.inf

    def const(name: str, value: float) -> Any:
        return helper.make_tensor(name, TensorProto.FLOAT, [], [value])

    nodes = [
        helper.make_node(
            "TreeEnsembleRegressor",
            [input_name],
            ["path_sum"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            post_transform="NONE",
            nodes_treeids=tree_ids,
            nodes_nodeids=node_ids,
            nodes_featureids=feature_ids,
            nodes_values=thresholds,
            nodes_modes=modes,
            nodes_truenodeids=true_ids,
            nodes_falsenodeids=false_ids,
            nodes_missing_value_tracks_true=[0] * len(node_ids),
            nodes_hitrates=[1.0] * len(node_ids),
            target_treeids=leaf_tree,
            target_nodeids=leaf_node,
            target_ids=[0] * len(leaf_node),
            target_weights=leaf_weight,
        ),
        helper.make_node("Div", ["path_sum", "denominator"], ["mean_ratio"]),
        helper.make_node("Neg", ["mean_ratio"], ["exponent"]),
        helper.make_node("Pow", ["two", "exponent"], ["anomaly"]),
        helper.make_node("Neg", ["anomaly"], ["score_samples"]),
        helper.make_node("Sub", ["score_samples", "offset"], ["scores"]),
        helper.make_node("Less", ["scores", "zero"], ["outlier"]),
        helper.make_node("Where", ["outlier", "minus_one", "one"], ["label_2d"]),
        helper.make_node("Reshape", ["label_2d", "flat"], ["label"]),
    ]
    initializers = [
        const("denominator", denominator),
        const("two", 2.0),
        const("offset", float(forest.offset_)),
        const("zero", 0.0),
        helper.make_tensor("minus_one", TensorProto.INT64, [], [-1]),
        helper.make_tensor("one", TensorProto.INT64, [], [1]),
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
    ]
    graph = helper.make_graph(
        nodes,
        "isolation_forest",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 1]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", ml_opset)],
        producer_name=CONVERTER,
    )
    model.ir_version = min(model.ir_version, 10)
    return bytes(model.SerializeToString())
