"""Benchmarks of lattice-qdrant (not tests, not part of the wheel); ``scripts/bench`` runs them.

Run from the repository root: ``python -m benchmarks.backfill``, ``python -m benchmarks.kernels``,
``python -m benchmarks.quality``, ``python -m benchmarks.overhead``. :mod:`benchmarks.corpus` is the real
text corpus they, the demo and the tests share.
"""
