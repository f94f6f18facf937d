"""eqprop: equilibrium propagation on any topology."""

__version__ = "0.1.0"
