"""The registry of flow families: name -> configuration class, model class and paper.

Every family is a :class:`~flows.base.UnitSquareFlow` with ``sample(u) -> (x, log_pdf)`` and
``log_prob(x)`` on the unit square, scripts with :func:`torch.jit.script`, and is saved by
:func:`flows.export.save_flow` with its name (``config.kind``) in the file's metadata, so the
renderer (``--sampler flow``, ``--light flow``) takes any of them unchanged. The CLI
(``tracer fit-flow --model NAME``), :func:`flows.train.fit_flow` and
``benchmarks/bench_flow_families.py`` find a family here.

Importing this module imports neither Torch nor the families (the CLI builds its argument
parser from :data:`FAMILY_NAMES`); :meth:`Family.config_class` and :meth:`Family.model_class`
import a family's module when asked.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from flows.base import ConfigDict, UnitSquareFlow


@dataclass(frozen=True)
class Family:
    """One family: where its classes live, and its paper.

    Attributes:
        name: the ``--model`` name and the metadata's ``model`` (its config's ``kind``).
        module: the module that defines the two classes.
        config: the name of its frozen-dataclass configuration class.
        model: the name of its model class.
        paper: the reference its docstring cites.
    """

    name: str
    module: str
    config: str
    model: str
    paper: str

    def config_class(self) -> type[ConfigDict]:
        """The configuration class (imports the family's module)."""
        return getattr(importlib.import_module(self.module), self.config)

    def model_class(self) -> type[UnitSquareFlow]:
        """The model class (imports the family's module)."""
        return getattr(importlib.import_module(self.module), self.model)

    def default_config(self, **overrides: Any) -> ConfigDict:
        """The family's default configuration with ``overrides`` applied."""
        return self.config_class()(**overrides)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("nice", "flows.nice", "NICEConfig", "NICEFlow", "Dinh, Krueger, Bengio 2014"),
        Family("realnvp", "flows.realnvp", "RealNVPConfig", "RealNVPFlow",
               "Dinh, Sohl-Dickstein, Bengio 2017"),
        Family("glow", "flows.glow", "GlowConfig", "GlowFlow", "Kingma, Dhariwal 2018"),
        Family("maf", "flows.maf", "MAFConfig", "MAFFlow", "Papamakarios, Pavlakou, Murray 2017"),
        Family("iaf", "flows.maf", "IAFConfig", "IAFFlow", "Kingma et al. 2016"),
        Family("spline", "flows.model", "FlowConfig", "SplineFlow", "Durkan et al. 2019"),
        Family("pixel", "flows.pixel_flow", "PixelFlowConfig", "PixelFlow", "Mueller et al. 2019"),
    )
}
#: The families' names, in the order of :data:`FAMILIES` (simplest first).
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        ValueError: no such family (the message lists them).
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown flow family {name!r}; expected one of {', '.join(FAMILY_NAMES)}") from None


def config_from_dict(name: str, d: dict[str, Any]) -> ConfigDict:
    """The configuration of family ``name`` from its ``to_dict()`` (a flow file's metadata)."""
    return family(name).config_class().from_dict(d)


def build_flow(config: ConfigDict, p: np.ndarray) -> UnitSquareFlow:
    """A new, untrained flow of ``config`` (its family is ``config.kind``) for the normalised
    density ``p`` (H, W): the family's ``for_density`` (a pixel flow takes the map's size and
    row masses; a mixture places its pixel components on the brightest pixels)."""
    return family(config.kind).model_class().for_density(config, p)
