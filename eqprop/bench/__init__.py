"""Benchmarks: how fast the engine is (:mod:`~eqprop.bench.engine` and the modules it names,
``eqprop bench``) and what a real epoch costs with each free-phase solver
(:mod:`~eqprop.bench.solvers`, ``eqprop bench-solvers``)."""
