"""What every flow on the unit square shares: the ``sample`` / ``log_prob`` interface, in chunks,
and the dict round trip of its configuration.

A flow here is an ``nn.Module`` with a uniform base density on :math:`[0, 1]^2` that
implements ``_sample(u) -> (x, log q(x))`` and ``_log_prob(x) -> log q(x)`` for one block of
rows. :class:`UnitSquareFlow` exports the public, TorchScript-callable ``sample`` and
``log_prob``, which cut large batches into blocks of ``chunk_size`` rows (faster on the CPU:
the temporaries of a block stay in cache; the results are identical).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import Tensor, nn


class UnitSquareFlow(nn.Module):
    """Base of every flow family (:mod:`flows.families`).

    Args:
        chunk_size: rows per block in :meth:`sample` and :meth:`log_prob` (speed only).
    """

    def __init__(self, chunk_size: int = 16384) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size

    @classmethod
    def for_density(cls, config: Any, p: np.ndarray) -> Self:
        """A new, untrained flow of ``config`` for the normalised density ``p`` (H, W), as
        :func:`flows.train.fit_flow` starts it (each family says how)."""
        raise NotImplementedError

    def count_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    @torch.jit.export
    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of the model at ``x (N, 2)`` in ``[0, 1]^2`` (``x[:, 0] = u``): ``(N,)``."""
        n = x.shape[0]
        if n <= self.chunk_size:
            return self._log_prob(x)
        parts: list[Tensor] = []
        for s in range(0, n, self.chunk_size):
            parts.append(self._log_prob(x[s : s + self.chunk_size]))
        return torch.cat(parts)

    @torch.jit.export
    def sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Map uniform random numbers ``u (N, 2)`` to samples ``x (N, 2)`` and ``log q(x) (N,)``.

        ``log q`` is the density of the point as returned (after any rounding to ``u``'s
        dtype): :meth:`log_prob` of ``x`` gives it back to float precision, in any batch.
        It can lie far below float32's ``exp`` range (about -103) where a flow gives a region
        little mass: exponentiate it in float64.
        """
        n = u.shape[0]
        if n <= self.chunk_size:
            return self._sample(u)
        xs: list[Tensor] = []
        log_qs: list[Tensor] = []
        for s in range(0, n, self.chunk_size):
            x, log_q = self._sample(u[s : s + self.chunk_size])
            xs.append(x)
            log_qs.append(log_q)
        return torch.cat(xs), torch.cat(log_qs)

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class ConfigDict:
    """``to_dict`` / ``from_dict`` for the frozen dataclasses that configure a flow.

    Attributes:
        kind: the family's name in :mod:`flows.families` (a class variable of each config).
    """

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**d)
