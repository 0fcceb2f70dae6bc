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
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, inverse = np.unique(edges.ravel(), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(inverse), dtype=np.int8), (inverse[:, 0], inverse[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # nodes are sorted, so the first node of each label is its smallest
    _, first = np.unique(labels, return_index=True)
    roots = nodes[first][labels]
    keep = nodes != roots
    return np.stack([nodes[keep], roots[keep]], axis=1)


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
