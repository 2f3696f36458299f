r"""The film: per-pixel running mean and variance, and the image files it writes.

Each pixel keeps Welford's running mean and :math:`M_2` (Welford 1962; Knuth TAOCP vol. 2,
§4.2.2) over its samples, so the variance of the pixel estimate is
:math:`\hat\sigma^2 / n = M_2 / (n (n - 1))`, available at any sample count in one pass.
Two films of disjoint samples merge exactly (up to rounding) by the pairwise update of
Chan, Golub and LeVeque (1979): with :math:`n = n_a + n_b` and :math:`\delta = \bar x_b - \bar x_a`,
:math:`\bar x = \bar x_a + \delta n_b / n` and :math:`M_2 = M_{2,a} + M_{2,b} + \delta^2 n_a n_b / n`;
that is how chunks rendered apart (checkpoints, Ray workers) become one image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tracer.hdr_io import write_exr


class Film:
    """Running statistics of an H x W RGB image."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        n = width * height
        self.mean = np.zeros((n, 3))
        self.m2 = np.zeros((n, 3))
        self.count = np.zeros(n, np.int64)
        self.bad = np.zeros(n, np.int64)

    def state(self) -> dict[str, np.ndarray]:
        """The per-pixel statistics (what a checkpoint stores)."""
        return {"mean": self.mean, "m2": self.m2, "count": self.count, "bad": self.bad}

    @classmethod
    def from_state(cls, width: int, height: int, state: dict[str, np.ndarray]) -> Film:
        """A film holding ``state`` (checked against the size)."""
        film = cls(width, height)
        for name, a in film.state().items():
            v = np.asarray(state[name])
            if v.shape != a.shape:
                raise ValueError(f"film state {name!r} has shape {v.shape}, expected {a.shape}")
            a[...] = v
        return film

    def merge(self, other: Film) -> None:
        """Add the samples of ``other`` (disjoint from this film's) by Chan et al.'s update."""
        if (other.width, other.height) != (self.width, self.height):
            raise ValueError("cannot merge films of different sizes")
        na = self.count.astype(np.float64)[:, None]
        nb = other.count.astype(np.float64)[:, None]
        n = na + nb
        with np.errstate(divide="ignore", invalid="ignore"):
            fb = np.where(n > 0, nb / n, 0.0)  # n_b / n, 0 where neither has a sample
        delta = other.mean - self.mean
        self.mean += delta * fb
        self.m2 += other.m2 + delta * delta * na * fb
        self.count += other.count
        self.bad += other.bad

    def image(self) -> np.ndarray:
        """(H, W, 3) mean radiance."""
        return self.mean.reshape(self.height, self.width, 3).copy()

    def variance(self) -> np.ndarray:
        """(H, W, 3) variance of each pixel's mean estimate, M2 / (n (n - 1))."""
        n = self.count.astype(np.float64)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(n > 1, self.m2 / (n * (n - 1)), np.inf)
        return v.reshape(self.height, self.width, 3)

    def mean_variance(self) -> float:
        """Mean over pixels and channels of the variance of the pixel estimate."""
        return float(np.mean(self.variance()))

    def write(self, path: Path, exposure: float = 0.0, tonemap: str = "filmic") -> tuple[Path, Path]:
        """Write the linear EXR at ``path`` and a tonemapped PNG beside it."""
        path = Path(path)
        img = self.image().astype(np.float32)
        write_exr(path, img)
        png = path.with_suffix(".png")
        save_png(png, img, exposure, tonemap)
        return path, png


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def aces_filmic(x: np.ndarray) -> np.ndarray:
    """Narkowicz's fit of the ACES filmic curve (2015), then clamped to [0, 1]."""
    x = np.maximum(x, 0.0) * 0.6
    return np.clip((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0)


def tonemap_image(img: np.ndarray, exposure: float = 0.0, tonemap: str = "filmic") -> np.ndarray:
    """Linear radiance to 8-bit sRGB: exposure in stops, then ``srgb`` (clip) or ``filmic``."""
    x = np.nan_to_num(img.astype(np.float64), nan=0.0, posinf=0.0) * 2.0**exposure
    if tonemap == "filmic":
        x = aces_filmic(x)
    elif tonemap != "srgb":
        raise ValueError(f"unknown tonemap {tonemap!r} (choose srgb or filmic)")
    return (srgb_encode(x) * 255 + 0.5).astype(np.uint8)


def save_png(path: Path, img: np.ndarray, exposure: float = 0.0, tonemap: str = "filmic") -> None:
    """Write a tonemapped PNG."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tonemap_image(img, exposure, tonemap)).save(path)
