"""Convolutional Hopfield networks trained with equilibrium propagation
(``docs/science.md`` section 7): :class:`ConvNetwork` (conv blocks, then dense layers),
:class:`ConvBlock` (one conv layer with its max pooling), :class:`ConvSGD` (the built-in
update on them) and :func:`conv_mnist` (the ``conv-mnist`` preset's trainer). The relaxers,
nudgings, estimators and :class:`~eqprop.training.Trainer` work on a :class:`ConvNetwork` as
on the fully connected :class:`~eqprop.network.Network`.
"""

from eqprop.conv.network import ConvBlock, ConvNetwork
from eqprop.conv.preset import conv_mnist
from eqprop.conv.update import ConvSGD

__all__ = ["ConvBlock", "ConvNetwork", "ConvSGD", "conv_mnist"]
