r"""Branch-light sine, cosine and arctangent in double precision for the per-entry kernels.

The renderer's trigonometry is of two kinds: :math:`\sin \pi x, \cos \pi x` of a fraction of a
turn (square -> direction, BSDF azimuths) and :math:`\operatorname{atan2}(y, x) / \pi` (direction
-> square). libm's ``sin`` / ``cos`` / ``acos`` / ``atan2`` cost 8-17 ns a call here, most of it
range reduction and special cases these arguments never need. Here:

* :func:`sincos_pi`: the argument is reduced in units of :math:`\pi / 2`
  (:math:`r = x - n/2`, :math:`|r| \le 1/4`, exact since :math:`n/2` is a float near x,
  except at a rounding tie of :math:`2x + 1/2`, where :math:`|r|` may exceed 1/4 by an ulp),
  then the minimax polynomials of FreeBSD msun's ``__kernel_sin`` / ``__kernel_cos`` (Sun
  Microsystems, 1993: "Permission to use, copy, modify, and distribute this software is freely
  granted, provided that this notice is preserved") on :math:`t = \pi r \in [-\pi/4, \pi/4]`,
  and the quadrant's swap and signs.
* :func:`atan2_pi`: the ratio :math:`a = \min(|x|,|y|) / \max(|x|,|y|) \in [0, 1]`, one
  reduction about :math:`\arctan 1` above :math:`\tan(\pi/8)`, msun ``s_atan.c``'s 11-term odd
  polynomial (accurate on :math:`|x| < 7/16`), then the octant's reflections.

Both agree with libm to a few units in the last place (``tests/test_trig.py`` checks 2e-16
absolute on dense grids), are plain arithmetic (the CUDA back-end compiles the same code), and
cost 2-5 ns.
"""

from __future__ import annotations

import math

from numba import njit

# msun __kernel_sin: sin(t) = t + t^3 (S1 + t^2 (S2 + ... + t^2 S6)), |t| <= pi/4
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
# msun __kernel_cos: cos(t) = 1 - t^2/2 + t^4 (C1 + t^2 (C2 + ... + t^2 C6)), |t| <= pi/4
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
# msun s_atan.c: atan(x) = x - x^3 (aT0 + x^2 aT1 + ... + x^20 aT10), |x| < 7/16
_AT0 = 3.33333333333329318027e-01
_AT1 = -1.99999999998764832476e-01
_AT2 = 1.42857142725034663711e-01
_AT3 = -1.11111104054623557880e-01
_AT4 = 9.09088713343650656196e-02
_AT5 = -7.69187620504482999495e-02
_AT6 = 6.66107313738753120669e-02
_AT7 = -5.83357013379057348645e-02
_AT8 = 4.97687799461593236017e-02
_AT9 = -3.65315727442169155270e-02
_AT10 = 1.62858201153657823623e-02
# atan(1) as a head and a tail (msun atanhi / atanlo)
_ATAN_ONE_HI = 7.85398163397448278999e-01
_ATAN_ONE_LO = 3.06161699786838301793e-17
_TAN_PI_8 = 0.41421356237309503


@njit(cache=True, inline="always")
def sincos_pi(x: float) -> tuple[float, float]:
    """(sin(pi x), cos(pi x)) for finite x of moderate size (the renderer passes [-2, 2])."""
    n = math.floor(2.0 * x + 0.5)  # nearest quarter turn: x = n/2 + r
    r = x - 0.5 * n  # exact: |r| <= 1/4 (+ an ulp at a rounding tie)
    t = math.pi * r
    z = t * t
    s = t + t * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    hz = 0.5 * z
    w = 1.0 - hz
    c = w + (((1.0 - w) - hz) + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6))))))
    q = int(n) & 3
    # rotate by q quarter turns: (s, c) -> (c, -s) -> (-s, -c) -> (-c, s); selects and
    # sign factors, not branches (the quadrant of a random direction is not predictable)
    odd = (q & 1) == 1
    sin_sign = 1.0 - 2.0 * ((q >> 1) & 1)
    cos_sign = 1.0 - 2.0 * (((q + 1) >> 1) & 1)
    return sin_sign * (c if odd else s), cos_sign * (s if odd else c)


@njit(cache=True, inline="always")
def _atan_unit(a: float) -> float:
    """atan(a) for a in [0, 1]: msun s_atan.c's polynomial on |x| < 7/16 after one reduction.

    Above tan(pi/8), atan(a) = pi/4 + atan(x) with x = (a - 1)/(a + 1), |x| <= tan(pi/8) < 7/16;
    written as arithmetic on k = 0 or 1 so that the compiled loop has no branch.
    """
    k = 1.0 * (a > _TAN_PI_8)
    x = (a - k) / (1.0 + k * a)
    z = x * x
    w = z * z
    s1 = z * (_AT0 + w * (_AT2 + w * (_AT4 + w * (_AT6 + w * (_AT8 + w * _AT10)))))
    s2 = w * (_AT1 + w * (_AT3 + w * (_AT5 + w * (_AT7 + w * _AT9))))
    return k * _ATAN_ONE_HI - ((x * (s1 + s2) - k * _ATAN_ONE_LO) - x)


@njit(cache=True, inline="always")
def atan2_pi(y: float, x: float) -> float:
    """atan2(y, x) / pi in [-1, 1]; (0, 0) gives 0 (libm's +-0 signs are not kept)."""
    ax = abs(x)
    ay = abs(y)
    # the octant's reflections as arithmetic on 0/1 flags: a -> pi/2 - a, 1 - a, -a
    steep = 1.0 * (ay > ax)
    a = _atan_unit(min(ax, ay) / max(ax, ay, 5e-324))  # (0, 0) -> 0 / (least subnormal) = 0
    a = (steep * (0.5 * math.pi) + (1.0 - 2.0 * steep) * a) * (1.0 / math.pi)
    back = 1.0 * (x < 0.0)
    a = back + (1.0 - 2.0 * back) * a
    return (1.0 - 2.0 * (1.0 * (y < 0.0))) * a
