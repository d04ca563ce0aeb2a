"""Each dataset's neighbour graph found once per server, off the page's thread; then served from memory or disk.

While a large dataset's graph is being found the page stays usable: it shows a PCA preview of the map, on which
a person can already select and review images, and the scores, the review queue and the UMAP map follow.
"""

from __future__ import annotations

import numpy as np

from cleaner.graph.knn_backends import KnnBackend
from cleaner.graph.neighbours import GraphStore, NeighbourGraph, neighbour_graph
from cleaner.server.jobs import Jobs, JobStatus, Recent


class GraphService:
    """The one kNN graph per (embeddings, k, metric) that every consumer on the server shares."""

    def __init__(self, store: GraphStore, memory_entries: int = 4, backend: KnnBackend | None = None):
        self.store = store
        self._backend = backend
        self._memory = Recent(memory_entries)
        self._jobs = Jobs(1, "cleaner-graph")  # one search at a time: each uses every core

    @property
    def jobs_started(self) -> int:
        """Searches this service ran itself (not read from disk or adopted)."""
        return self._jobs.started

    def get(self, embedding_digest: str, k: int, metric: str, n_rows: int) -> NeighbourGraph | None:
        key = (embedding_digest, k, metric)
        graph = self._memory.get(key)
        if graph is None:
            graph = self.store.get(embedding_digest, k, metric, n_rows)
            if graph is not None:
                self._memory.put(key, graph)
        return graph

    def adopt(self, embedding_digest: str, k: int, graph: NeighbourGraph) -> None:
        """Serve a graph found elsewhere (a checked `--precompute` sidecar) as if this service had found it."""
        self._memory.put((embedding_digest, k, graph.metric), graph)

    def request(self, embedding_digest: str, k: int, metric: str, embeddings: np.ndarray) -> JobStatus:
        """Start the search unless the graph is ready or already on its way; return where it stands."""
        if self.get(embedding_digest, k, metric, len(embeddings)) is not None:
            return JobStatus("ready")
        key = (embedding_digest, k, metric)
        self._jobs.forget_if_lost(key, lambda: self.get(embedding_digest, k, metric, len(embeddings)) is not None)
        self._jobs.start(key, self._search, key, embeddings)
        return self.status(embedding_digest, k, metric)

    def _search(self, key: tuple[str, int, str], embeddings: np.ndarray) -> None:
        digest, k, metric = key
        graph = neighbour_graph(
            embeddings, k=k, metric=metric, store=self.store, embedding_digest=digest, backend=self._backend
        )
        self._memory.put(key, graph)

    def status(self, embedding_digest: str, k: int, metric: str) -> JobStatus:
        key = (embedding_digest, k, metric)
        if key in self._memory:
            return JobStatus("ready")
        return self._jobs.status(key)

    def wait(self, embedding_digest: str, k: int, metric: str, timeout: float | None = None) -> None:
        """Until the search ends (its exception raised here); at once when none runs."""
        self._jobs.wait((embedding_digest, k, metric), timeout)
