"""Generators of the scenario catalogue (run from the repository root:
``python -m tools.catalogue_core``, ``python -m tools.catalogue_matrix``,
``python -m tools.catalogue_edges``)."""

#: The generator modules; each has ``S`` (its scenarios) and ``GENERATOR`` (its path).
GENERATORS = ("tools.catalogue_core", "tools.catalogue_matrix", "tools.catalogue_edges")
