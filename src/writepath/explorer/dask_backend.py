"""The explorer's jobs on Dask distributed (the optional extra ``writepath[distributed]``).

Imported only when ``--backend dask`` is picked: importing this module without Dask installed
raises ImportError, which ``workers.open_backend`` turns into one line for the user.

Jobs are submitted by reference to module-level functions of ``writepath.explorer.workers``
with plain arguments; each returns JSON text, which is all that comes back from a worker, as
with the local pool. Results are gathered in submission order. With a ``scheduler`` address the
workers of that cluster must have writepath installed and see the scenario file at the same
path (they load it themselves).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# Dask is an optional extra and ships no complete type hints: where it is missing the import is
# untyped, where it is present its calls are; the ignores cover both (unused-ignore: either way).
from distributed import Client, LocalCluster  # type: ignore[import-not-found, unused-ignore]

from writepath.explorer.workers import BackendUnavailable, Job, WorkerFailed

#: Seconds to wait for a --scheduler to answer before saying it cannot be reached.
CONNECT_TIMEOUT = 10


class DaskBackend:
    """Runs jobs on a Dask distributed client; see ``workers.Backend`` for the contract."""

    def __init__(self, client: Client, jobs: int) -> None:
        self.client = client
        self.jobs = jobs

    def run(self, work: Sequence[Job]) -> list[str]:
        # pure=False: two equal jobs are still two tasks (never merged by Dask's key hashing).
        futures = [self.client.submit(fn, *args, pure=False) for fn, args in work]
        try:
            results = self.client.gather(futures)  # type: ignore[no-untyped-call, unused-ignore]
        except Exception as e:
            # A job's failure on a worker (a missing file, another file at the path, no
            # writepath there) is the user's to see in one line, not a traceback.
            raise WorkerFailed(f"a Dask worker failed: {type(e).__name__}: {e}") from None
        return [str(r) for r in results]

    @classmethod
    @contextmanager
    def open(
        cls, jobs: int, scheduler: str | None = None, processes: bool = True
    ) -> Iterator[DaskBackend]:
        """A client of ``scheduler``, or of a LocalCluster of ``jobs`` single-threaded workers
        (processes, unless ``processes`` is False) started now and closed on exit."""
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call, unused-ignore]
            except (OSError, ValueError, TypeError) as e:
                # A wrong address or an unreachable scheduler is the user's to fix: one line.
                raise BackendUnavailable(f"--scheduler {scheduler}: {e}") from None
            with client:
                yield cls(client, jobs)
            return
        with (
            LocalCluster(  # type: ignore[no-untyped-call, unused-ignore]
                n_workers=jobs,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call, unused-ignore]
        ):
            yield cls(client, jobs)
