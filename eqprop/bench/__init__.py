"""Benchmarks: how fast the engine is (:mod:`~eqprop.bench.engine`, ``eqprop bench``) and what
a real epoch costs with each free-phase solver (:mod:`~eqprop.bench.solvers`,
``eqprop bench-solvers``)."""
