"""The parts of ``eqprop sweep`` (:mod:`eqprop.sweep`): what a trial does on its worker
(:mod:`eqprop.sweeps.trial`), how the trials are run on Ray Tune
(:mod:`eqprop.sweeps.engine`), and the tables and plot of a sweep
(:mod:`eqprop.sweeps.results`). Only :mod:`eqprop.sweeps.engine` imports Ray."""
