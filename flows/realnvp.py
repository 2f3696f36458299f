r"""RealNVP: affine couplings on the plane (Dinh, Sohl-Dickstein and Bengio, "Density
estimation using Real NVP", ICLR 2017).

:math:`g` is ``n_layers`` affine couplings :math:`z_t = y_t e^{s(y_c)} + m(y_c)` alternating the
moved coordinate (the checkerboard / channel masks of the paper reduce to this in 2-D), with
the log-scale bounded, :math:`|s| \le` ``max_log_scale`` (:class:`flows.plane.AffineCoupling`),
carried onto the square by the logistic map of :mod:`flows.plane`. Each layer can stretch one
coordinate by a factor that depends on the other, so the density can concentrate, but every
conditional is a logistic bent by ``n_layers / 2`` affine maps: few modes per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from flows.plane import AffineCoupling, PlaneFlow, ScaledPlaneFlowConfig


@dataclass(frozen=True)
class RealNVPConfig(ScaledPlaneFlowConfig):
    """A :class:`RealNVPFlow` (fields: :class:`flows.plane.ScaledPlaneFlowConfig`)."""

    kind: ClassVar[str] = "realnvp"


class RealNVPFlow(PlaneFlow):
    """RealNVP on the square (module docstring); ``sample`` / ``log_prob`` as every family."""

    def __init__(self, config: RealNVPConfig | None = None, chunk_size: int = 16384) -> None:
        config = RealNVPConfig() if config is None else config
        layers = [
            AffineCoupling(i % 2, True, max_log_scale=config.max_log_scale, **config.conditioner_args())
            for i in range(config.n_layers)
        ]
        super().__init__(config, layers, chunk_size)
