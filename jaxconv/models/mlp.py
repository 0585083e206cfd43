"""The lecture's fully connected networks: the cats-vs-dogs MLP and the dropout MLP."""

from __future__ import annotations

from jaxconv.layers import Dropout, Flatten, Linear, LogSoftmax, ReLU, Sequential, Tanh
from jaxconv.models.base import Classifier
from jaxconv.registry import register_model


class MLP(Classifier):
    """3072 → 512, Tanh, → classes, LogSoftmax (the notes' ``nn.Sequential``).

    The log-softmax output is kept as the course has it; it is a valid logit vector
    (cross-entropy on it equals the NLL loss the notes train with).
    """

    fixed_size = True

    def __init__(
        self, *, arch, num_classes, in_channels, image_size, rngs, dtype, hidden: int = 512
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        d = in_channels * image_size * image_size
        self.net = Sequential(
            Flatten(),
            Linear(d, hidden, dtype=dtype, rngs=rngs),
            Tanh(),
            Linear(hidden, num_classes, dtype=dtype, rngs=rngs),
            LogSoftmax(dim=1),
        )


class DropoutMLP(Classifier):
    """The lecture's ``deep_net_drop``: ``depth`` hidden Linear-ReLU-Dropout layers, then a
    Linear."""

    fixed_size = True

    def __init__(
        self,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        depth: int = 3,
        width: int = 100,
        dropout: float = 0.5,
    ):
        if depth < 1:
            raise ValueError(f'depth must be >= 1, got {depth}')
        super().__init__(arch, in_channels, image_size, dtype)
        layers, d = [Flatten()], in_channels * image_size * image_size
        for _ in range(depth):
            layers += [
                Linear(d, width, dtype=dtype, rngs=rngs),
                ReLU(),
                Dropout(dropout, rngs=rngs),
            ]
            d = width
        layers.append(Linear(d, num_classes, dtype=dtype, rngs=rngs))
        self.net = Sequential(*layers)


@register_model
def mlp(**kw) -> MLP:
    """The lecture's cats-vs-dogs MLP (one Tanh hidden layer, log-softmax output)."""
    return MLP(**kw)


@register_model
def mlp_dropout(**kw) -> DropoutMLP:
    """The lecture's ``deep_net_drop``; dropout from Srivastava et al. 2014, JMLR 15(56)."""
    return DropoutMLP(**kw)
