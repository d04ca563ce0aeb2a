"""Connecting to a Dask cluster: `local:N` starts a LocalCluster of N worker processes on this machine, anything
else is a scheduler address (`tcp://host:8786`), reached within a bounded time or refused with a clear message."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from cleaner.server.errors import CleanerError

CONNECT_TIMEOUT_S = 10.0
_LOCAL = re.compile(r"^local:(\d+)$")


class ClusterError(CleanerError, RuntimeError):
    """The cluster cannot be used: not installed, not reachable, or a bad address."""


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            "--dask needs the 'dask[distributed]' package: pip install 'cleaner[distributed]' "
            "(or pip install 'dask[distributed]')"
        ) from exc
    return distributed


@contextlib.contextmanager
def cluster_client(address: str, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[object]:
    """A dask.distributed Client for `address` (closed, with the LocalCluster it started, on exit)."""
    distributed = _import_distributed()
    local = _LOCAL.match(address.strip())
    if address.strip().startswith("local") and not local:
        raise ClusterError(f"--dask {address!r}: write local:N with N worker processes, e.g. local:2")
    if local:
        n = int(local.group(1))
        if not 1 <= n <= 512:
            raise ClusterError(f"--dask {address!r}: a local cluster needs 1 to 512 worker processes")
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ClusterError(
            f"could not reach the Dask scheduler at {address!r} within {timeout:g} s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}). "
            "Check the address (tcp://HOST:8786) and that the scheduler runs, or use --dask local:N."
        ) from exc
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError) as exc:
            raise ClusterError(f"the Dask scheduler at {address!r} has no worker (waited {timeout:g} s)") from exc
        yield client
    finally:
        client.close()
