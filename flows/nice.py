r"""NICE: additive couplings on the plane (Dinh, Krueger and Bengio, "NICE: Non-linear
Independent Components Estimation", ICLR workshop 2015, arXiv:1410.8516, 2014).

:math:`g` is ``n_layers`` additive couplings :math:`z_t = y_t + m(y_c)` alternating the moved
coordinate, then NICE's diagonal scaling layer :math:`z_i \leftarrow z_i e^{s_i}`
(:class:`flows.plane.ElementwiseAffine`). The couplings preserve volume, so all of the
density's variation on the plane comes from the shifts bending a logistic base, and its
log-determinant is the constant :math:`\sum_i s_i`; on the square the logistic map's
log-determinants (:mod:`flows.plane`) add the rest. A volume-preserving flow can move mass
but not concentrate it in place: it represents smooth, moderately peaked maps, and a narrow
peak only by squeezing the whole plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from flows.plane import AffineCoupling, ElementwiseAffine, PlaneFlow, PlaneFlowConfig


@dataclass(frozen=True)
class NICEConfig(PlaneFlowConfig):
    """A :class:`NICEFlow` (fields: :class:`flows.plane.PlaneFlowConfig`)."""

    kind: ClassVar[str] = "nice"


class NICEFlow(PlaneFlow):
    """NICE on the square (module docstring); ``sample`` / ``log_prob`` as every family."""

    def __init__(self, config: NICEConfig | None = None, chunk_size: int = 16384) -> None:
        config = NICEConfig() if config is None else config
        layers: list[nn.Module] = [
            AffineCoupling(i % 2, False, **config.conditioner_args()) for i in range(config.n_layers)
        ]
        layers.append(ElementwiseAffine())
        super().__init__(config, layers, chunk_size)
