"""The exact search: every query row against every row, by faiss's blockwise BLAS kNN, on every core.

The queries are split into blocks and the searched rows into chunks; each (block, chunk) pair is one independent
task, and each block keeps the nearest found so far, merged chunk by chunk. No full prepared copy of the data is
made: a chunk is prepared once and searched by every block of queries.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cleaner.graph.knn_rows import ComparedRows, chunk_rows, cores, drop_self, in_parallel


def exact_rows(data: ComparedRows, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest other rows of the given rows: int32 indices and squared distances."""
    n, dims = data.n, data.dims
    k1 = min(k + 1, n)
    tasks = 4 * cores()
    query_blocks = max(min(tasks, len(rows) // 1024), -(-len(rows) // 4096), 1)
    query_size = -(-len(rows) // query_blocks)
    query_starts = range(0, len(rows), query_size)
    best_d = np.full((len(rows), k1), np.inf, dtype=np.float32)
    best_i = np.full((len(rows), k1), -1, dtype=np.int64)

    def search(parts: list[tuple[int, Callable[[], np.ndarray]]]) -> None:
        """Every block of queries against every part (its first row, its prepared rows), merged into the best."""
        found: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

        def task(query_start: int, first: int, searched: Callable[[], np.ndarray]) -> None:
            queries = data[rows[query_start : query_start + query_size]]
            base = searched()
            d, i = data.flat_knn(queries, base, min(k1, len(base)))
            found[query_start, first] = d, i + first

        in_parallel([lambda q=q, f=f, b=b: task(q, f, b) for q in query_starts for f, b in parts])
        for query_start in query_starts:
            block = slice(query_start, query_start + query_size)
            d = np.hstack([best_d[block]] + [found[query_start, f][0] for f, _ in parts])
            i = np.hstack([best_i[block]] + [found[query_start, f][1] for f, _ in parts])
            nearest = np.argsort(d, axis=1, kind="stable")[:, :k1]
            best_d[block], best_i[block] = np.take_along_axis(d, nearest, 1), np.take_along_axis(i, nearest, 1)

    if len(query_starts) == 1:
        # A few hundred sampled queries: every task prepares and searches its own share of the rows.
        share = min(chunk_rows(dims), -(-n // tasks))
        search([(f, lambda f=f: data[f : f + share]) for f in range(0, n, share)])
    else:
        # Many queries: each chunk of the searched rows is prepared once, and searched by every block of them.
        step = chunk_rows(dims)
        for base_start in range(0, n, step):
            base = data[base_start : base_start + step]
            share = -(-len(base) // max(1, -(-tasks // len(query_starts))))
            search(
                [
                    (base_start + f, lambda f=f, base=base, share=share: base[f : f + share])
                    for f in range(0, len(base), share)
                ]
            )
    ids, d2 = drop_self(best_i, best_d, rows, k)
    return ids.astype(np.int32), d2
