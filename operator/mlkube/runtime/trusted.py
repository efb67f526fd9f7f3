"""What a model file may construct: an explicit allow-list of classes, checked before skops runs.

Anyone who can write to the store could otherwise rewrite a node of ``model.skops`` into a
call (skops' ``ConstructorFromReduceNode`` calls whatever its ``__class__`` names, a
``FunctionNode`` hands out any function) and fix the digest beside it. Name prefixes such
as ``builtins.`` match functions as well as classes, so the check here is by exact name:

- every node's loader must be one that rebuilds data or an instance of a class
  (``SAFE_LOADERS``); the loaders that return or call functions and methods are refused;
- every type a node names must be in ``allowed_type_names()``: the estimators and
  transformers the trainer may fit (scikit-learn's public estimators, the classes behind
  the default ``sklearn.`` estimator allow-list), the scikit-learn internals their fitted
  state holds (losses, trees, kernels, optimizers), and the numpy/scipy/builtin
  containers and scalars. Each entry is built from an imported class object, so the list
  cannot name a function.

The schema is walked here, not by skops, so skops' own defaults (which trust numpy and
scipy ufuncs as functions) never widen it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from typing import Any, Final

# skops loaders that rebuild containers, arrays or instances of the node's own class.
SAFE_LOADERS: Final = frozenset(
    {
        "CachedNode",
        "DictNode",
        "ListNode",
        "TupleNode",
        "SetNode",
        "JsonNode",
        "TypeNode",
        "SliceNode",
        "BytesNode",
        "BytearrayNode",
        "ObjectNode",
        "NdArrayNode",
        "DTypeNode",
        "RandomStateNode",
        "RandomGeneratorNode",
        "SparseMatrixNode",
        "TreeNode",
        "LossNode",
    }
)


class UntrustedArtifactError(Exception):
    """The model file names a loader or a type outside the allow-list; ``str`` says which."""


def type_name(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _builtin_types() -> list[type[Any]]:
    return [
        dict,
        list,
        tuple,
        set,
        frozenset,
        str,
        int,
        float,
        bool,
        complex,
        bytes,
        bytearray,
        slice,
    ]


def _numpy_types() -> list[type[Any]]:
    import numpy as np

    scalars: list[type[Any]] = [
        np.float64,
        np.float32,
        np.float16,
        np.int64,
        np.int32,
        np.int16,
        np.int8,
        np.uint64,
        np.uint32,
        np.uint16,
        np.uint8,
        np.bool_,
        np.str_,
        np.bytes_,
        np.object_,
    ]
    return [
        np.ndarray,
        np.dtype,
        np.ma.MaskedArray,
        np.random.RandomState,
        np.random.Generator,
        *scalars,
    ]


def _scipy_types() -> list[type[Any]]:
    from scipy import sparse

    return [sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array, sparse.csc_array]


def _sklearn_internal_types() -> list[type[Any]]:
    """State that fitted estimators hold, found by fitting every classifier and regressor."""
    from sklearn._loss import link, loss
    from sklearn.calibration import _CalibratedClassifier, _SigmoidCalibration
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.gaussian_process import _gpc, kernels
    from sklearn.metrics._dist_metrics import EuclideanDistance64
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
    from sklearn.tree._tree import Tree

    found: list[type[Any]] = [
        _CalibratedClassifier,
        _SigmoidCalibration,
        _BinMapper,
        TreePredictor,
        _gpc._BinaryGaussianProcessClassifierLaplace,
        EuclideanDistance64,
        KDTree,
        BallTree,
        AdamOptimizer,
        SGDOptimizer,
        Tree,
    ]
    for module in (link, loss, kernels):
        found += [
            obj
            for _, obj in inspect.getmembers(module, inspect.isclass)
            if obj.__module__ == module.__name__
        ]
    found += _cython_losses()
    return found


def _cython_losses() -> list[type[Any]]:
    from sklearn._loss import _loss
    from sklearn.linear_model import _sgd_fast

    return [
        obj
        for module in (_loss, _sgd_fast)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__
    ]


@functools.cache
def allowed_type_names() -> frozenset[str]:
    """Exact ``module.Class`` names a model file may construct (classes only, never functions)."""
    from sklearn.utils import all_estimators

    classes: list[type[Any]] = [cls for _, cls in all_estimators()]
    classes += _builtin_types() + _numpy_types() + _scipy_types()
    classes += _sklearn_internal_types()
    names = set()
    for cls in classes:
        if not inspect.isclass(cls):  # pragma: no cover - every entry above is a class
            raise TypeError(f"{cls!r} is not a class; the artifact allow-list holds classes only")
        names.add(type_name(cls))
    return frozenset(names)


def _nodes(schema: Any) -> Iterator[dict[str, Any]]:
    """Every node of a skops schema, iteratively (a deep file cannot exhaust the stack)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item or "__class__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_schema(schema: Any) -> list[str]:
    """The types the file names, after refusing any loader or type outside the allow-list."""
    allowed = allowed_type_names()
    refused: set[str] = set()
    found: set[str] = set()
    for node in _nodes(schema):
        loader = node.get("__loader__")
        name = f"{node.get('__module__')}.{node.get('__class__')}"
        if loader not in SAFE_LOADERS:
            refused.add(f"{name} (loaded by {loader})")
        elif name not in allowed:
            refused.add(name)
        else:
            found.add(name)
    if refused:
        raise UntrustedArtifactError(", ".join(sorted(refused)))
    return sorted(found)
