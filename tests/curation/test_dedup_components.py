"""Connected components of candidate edges (curation/dedup/components.py) against a breadth-first
search written here, on random graphs, long chains, stars, self loops and repeated edges."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from dsllm.curation.dedup.components import INDEX_NODE, component_minima, merge_forests, spanning_forest


def bfs_minima(n: int, u: np.ndarray, v: np.ndarray) -> list[int]:
    """Each node's smallest connected node, by breadth-first search over adjacency lists."""
    adj = collections.defaultdict(list)
    for a, b in zip(u.tolist(), v.tolist()):
        adj[a].append(b)
        adj[b].append(a)
    out = [-1] * n
    for start in range(n):
        if out[start] >= 0:
            continue
        seen, queue = [start], collections.deque([start])
        out[start] = start
        while queue:
            for b in adj[queue.popleft()]:
                if out[b] < 0:
                    out[b] = start  # nodes are visited from the smallest unvisited one
                    seen.append(b)
                    queue.append(b)
    return out


def graphs():
    rng = np.random.default_rng(1)
    yield "empty", 5, np.zeros(0, np.int64), np.zeros(0, np.int64)
    for n, m in [(10, 4), (200, 150), (2000, 1900), (2000, 4000), (5000, 500)]:
        yield f"random-{n}-{m}", n, rng.integers(0, n, m), rng.integers(0, n, m)
    chain = rng.permutation(3000)
    yield "shuffled-chain", 3000, chain[:-1], chain[1:]
    yield "descending-chain", 3000, np.arange(2999, 0, -1), np.arange(2998, -1, -1)
    yield "star-to-largest", 500, np.full(499, 499), np.arange(499)
    loops = rng.integers(0, 50, 80)
    yield "self-loops-and-repeats", 50, np.concatenate([loops, loops[:20]]), np.concatenate([loops, loops[::-1][:20]])


@pytest.mark.parametrize("name,n,u,v", list(graphs()), ids=[g[0] for g in graphs()])
def test_component_minima_equal_bfs(name, n, u, v):
    assert component_minima(n, u, v).tolist() == bfs_minima(n, u, v)


def test_spanning_forest_maps_every_node_to_its_component_minimum():
    rng = np.random.default_rng(2)
    ids = np.sort(rng.choice(1 << 40, 400, replace=False)).astype(np.uint64)
    ids[-1] = INDEX_NODE  # the largest id: never a root unless alone
    pick = rng.integers(0, 400, (300, 2))
    edges = ids[pick]
    forest = spanning_forest(edges)
    minima = bfs_minima(400, pick[:, 0], pick[:, 1])
    touched = np.unique(pick)
    expected = sorted((int(ids[i]), int(ids[minima[i]])) for i in touched if minima[i] != i)
    assert sorted(map(tuple, forest.tolist())) == expected
    # merging forests of a split edge list gives the forest of the whole
    halves = [spanning_forest(edges[:150]), spanning_forest(edges[150:])]
    assert merge_forests(halves).tolist() == forest.tolist()
