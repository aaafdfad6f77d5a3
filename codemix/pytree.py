"""Names of pytree paths: the one walker the model, partitioning and
checkpointing share.

A path is what `jax.tree_util.tree_leaves_with_path` gives (DictKey,
SequenceKey, GetAttrKey, FlattenedIndexKey entries) or a plain tuple of keys
(as `nnx.State.flat_state()` gives). `path_names` turns either into plain keys
("layers", 0, "attn", "q"), `path_str` into "layers/0/attn/q", the form
checkpoints and error messages name parameters by. This module imports only
jax, so `codemix.model` may use it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax


def key_name(entry) -> Any:
    """The plain key of one path entry: a dict key, a sequence index, an
    attribute name, or the entry itself when it is already plain."""
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return entry


def path_names(path: Iterable) -> tuple:
    """("layers", 0, "attn", "q") for a tree path or a tuple of keys."""
    return tuple(key_name(k) for k in path)


def path_str(path: Iterable, sep: str = "/") -> str:
    """"layers/0/attn/q" for a tree path or a tuple of keys."""
    return sep.join(str(k) for k in path_names(path))


def flat(tree, is_leaf: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    """{"layers/0/attn/q": leaf, ...} in the tree's leaf order."""
    return {path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_leaf)}


def nest(items: Iterable[tuple[Iterable, Any]]) -> dict:
    """A nested dict from (path, value) pairs, the inverse of flattening a
    nested dict: nest([(("a", 0), 1)]) == {"a": {0: 1}}."""
    out: dict = {}
    for path, value in items:
        keys = path_names(path)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return out


def hashable(tree) -> tuple:
    """(treedef, leaves tuple): a tree of hashable leaves (shardings, say) as a
    key for functools.lru_cache; `jax.tree.unflatten(treedef, list(leaves))`
    rebuilds it."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(leaves)
