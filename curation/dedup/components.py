"""Connected components of candidate edges, kept small: every step returns a spanning forest
(node → component root, the smallest node), never the pairs themselves. Forests of different
band partitions merge pairwise, so the whole graph is never in one task's memory; the final
forest has at most one edge per duplicate document."""

from __future__ import annotations

import numpy as np

INDEX_NODE = np.uint64(0xFFFFFFFFFFFFFFFF)  # stands for "something already in the index"


def gid(file_index: int, rows: np.ndarray) -> np.ndarray:
    """Global document ids: file index in the high 32 bits, row in the low 32."""
    return (np.uint64(file_index) << np.uint64(32)) | rows.astype(np.uint64)


def gid_file(gids: np.ndarray) -> np.ndarray:
    return (gids >> np.uint64(32)).astype(np.int64)


def gid_row(gids: np.ndarray) -> np.ndarray:
    return (gids & np.uint64(0xFFFFFFFF)).astype(np.int64)


def spanning_forest(edges: np.ndarray) -> np.ndarray:
    """(m, 2) uint64 edges → (k, 2) edges (node, root) with root the smallest node of its
    component, one per non-root node: same components, at most nodes - 1 edges."""
    if len(edges) == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    nodes, inverse = np.unique(edges.ravel(), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    # nodes are sorted, so the smallest index of a component is its smallest node
    roots = nodes[component_minima(len(nodes), inverse[:, 0], inverse[:, 1])]
    keep = nodes != roots
    return np.stack([nodes[keep], roots[keep]], axis=1)


def component_minima(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For nodes 0..n-1 and undirected edges (u[i], v[i]): each node's smallest connected node.

    A vectorized union-find (hook and compress, as in Shiloach-Vishkin): every node keeps a
    parent no larger than itself in its own component; each round hooks the larger root of every
    edge whose ends lie in different trees onto the smaller one, then points every node at its
    root. When no edge joins two trees, each component is one star whose root is its smallest node
    (that node's parent cannot be smaller, so it is a root)."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        apart = pu != pv
        if not apart.any():
            return parent
        lo, hi = np.minimum(pu[apart], pv[apart]), np.maximum(pu[apart], pv[apart])
        np.minimum.at(parent, hi, lo)  # hi is a root (compressed below), lo a smaller root
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def merge_forests(forests: list[np.ndarray]) -> np.ndarray:
    """One spanning forest of the union of several."""
    parts = [f for f in forests if len(f)]
    if not parts:
        return np.zeros((0, 2), dtype=np.uint64)
    return spanning_forest(np.concatenate(parts))


def group_edges(keys: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """Documents sharing a key are candidates: a star from each group's smallest gid to the
    others (k - 1 edges for a group of k, not k^2)."""
    if len(keys) == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    order = np.lexsort((gids, keys))
    k, g = keys[order], gids[order]
    new_group = np.ones(len(k), dtype=bool)
    new_group[1:] = k[1:] != k[:-1]
    head = g[np.flatnonzero(new_group)][np.cumsum(new_group) - 1]
    member = ~new_group & (g != head)
    edges = np.stack([head[member], g[member]], axis=1)
    return np.unique(edges, axis=0) if len(edges) else edges
