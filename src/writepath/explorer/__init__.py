"""Explore the interleavings of a multi-task scenario (``writepath explore``).

Split by role, as Hypothesis' conjecture is: ``choices`` holds the policies that decide who runs
(bounded prefix, PCT random, replay) and the schedule text; ``engine`` runs one schedule through
the one scheduler (``writepath.sched``) and searches; ``properties`` judges each end state;
``record`` aggregates outcomes and violations; ``workers`` spreads subtrees over a ``Backend``
(a local process pool, or Dask distributed in ``dask_backend``) with JSON results; ``cli`` is the
command line. Nothing in ``writepath.kernel`` imports this package.
"""
