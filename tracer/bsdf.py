r"""The materials' BSDFs in the local shading frame (normal = +z), as Numba functions.

Dispatch is by an integer tag (pbrt's ``TaggedPointer::Dispatch``); a scene's parameters
are one row per material of a (K, 8) float array, ``[r, g, b, alpha, ior, 0, 0, 0]``, and the
functions take a material's five as a tuple of scalars (:func:`material_params`), so that a
loop over many shading points holds no array view and can compile to vector code.

* ``DIFFUSE``: Lambertian, :math:`f = \rho / \pi`, cosine-weighted sampling.
* ``CONDUCTOR``: rough conductor, Trowbridge-Reitz (GGX) microfacets with the
  height-correlated Smith masking term, Schlick's Fresnel with F0 = (r, g, b),
  :math:`f = D G F / (4 \cos\theta_o \cos\theta_i)`; sampled by the distribution of visible
  normals (Heitz 2018, "Sampling the GGX Distribution of Visible Normals", JCGT 7(4)), drawn
  by spherical caps (Dupuy and Benyoub 2023), with
  :math:`p(\omega_i) = G_1(\omega_o) D(m) / (4 \cos\theta_o)`.
* ``DIELECTRIC``: smooth dielectric with the exact Fresnel equations; reflection or
  refraction chosen with probability F (both delta lobes); radiance is scaled by
  :math:`1/\eta^2` on refraction (pbrt-v4, ``TransportMode::Radiance``).

Diffuse and conductor are two-sided: a ``wo`` below the surface mirrors the frame.
``eval`` returns :math:`f \cdot |\cos\theta_i|` and the sampling pdf; ``sample`` returns the
weight :math:`f |\cos\theta_i| / p`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from tracer.fsqrt import fsqrt
from tracer.trig import sincos_pi

DIFFUSE = 0
CONDUCTOR = 1
DIELECTRIC = 2
#: material kinds (0 .. N_KINDS - 1)
N_KINDS = 3
N_PARAMS = 8
INV_PI = 1.0 / math.pi


@njit(cache=True, inline="always")
def material_params(prm: np.ndarray) -> tuple[float, float, float, float, float]:
    """A material's (r, g, b, alpha, ior): the first five of its (N_PARAMS,) parameter row."""
    return prm[0], prm[1], prm[2], prm[3], prm[4]


@njit(cache=True, inline="always")
def ggx_d(mz: float, alpha: float) -> float:
    """Trowbridge-Reitz normal distribution D(m) for cos(theta_m) = mz."""
    if mz <= 0.0:
        return 0.0
    a2 = alpha * alpha
    t = mz * mz * (a2 - 1.0) + 1.0
    return a2 / (math.pi * t * t)


@njit(cache=True, inline="always")
def ggx_lambda(wz: float, alpha: float) -> float:
    """Smith's Lambda for GGX: (-1 + sqrt(1 + alpha^2 tan^2 theta)) / 2."""
    c2 = wz * wz
    if c2 >= 1.0:
        return 0.0
    if c2 <= 0.0:
        return 1e30
    tan2 = (1.0 - c2) / c2
    return 0.5 * (-1.0 + fsqrt(1.0 + alpha * alpha * tan2))


@njit(cache=True, inline="always")
def fresnel_dielectric(cos_i: float, eta: float) -> float:
    """Unpolarised Fresnel reflectance; eta = n_transmitted / n_incident, cos_i >= 0."""
    sin2_t = (1.0 - cos_i * cos_i) / (eta * eta)
    if sin2_t >= 1.0:
        return 1.0
    cos_t = fsqrt(1.0 - sin2_t)
    r_parl = (eta * cos_i - cos_t) / (eta * cos_i + cos_t)
    r_perp = (cos_i - eta * cos_t) / (cos_i + eta * cos_t)
    return 0.5 * (r_parl * r_parl + r_perp * r_perp)


@njit(cache=True, inline="always")
def schlick(f0: float, cos_h: float) -> float:
    """Schlick's approximation of conductor Fresnel."""
    m = 1.0 - max(0.0, min(1.0, cos_h))
    m2 = m * m
    return f0 + (1.0 - f0) * m2 * m2 * m


@njit(cache=True, inline="always")
def bsdf_eval(
    kind: int, prm: tuple, wox: float, woy: float, woz: float, wix: float, wiy: float, wiz: float
) -> tuple[float, float, float, float]:
    """(f * |cos theta_i| as rgb, pdf of sampling wi) for a non-delta material; 0 otherwise.
    ``prm``: the material's (r, g, b, alpha, ior) (:func:`material_params`)."""
    if kind == DIELECTRIC:
        return 0.0, 0.0, 0.0, 0.0
    if woz < 0.0:  # two-sided: mirror the frame
        woz = -woz
        wiz = -wiz
    if wiz <= 0.0 or woz <= 0.0:
        return 0.0, 0.0, 0.0, 0.0
    if kind == DIFFUSE:
        c = wiz * INV_PI
        return prm[0] * c, prm[1] * c, prm[2] * c, c
    # rough conductor
    alpha = prm[3]
    hx = wox + wix
    hy = woy + wiy
    hz = woz + wiz
    hl = fsqrt(hx * hx + hy * hy + hz * hz)
    if hl == 0.0:
        return 0.0, 0.0, 0.0, 0.0
    hx /= hl
    hy /= hl
    hz /= hl
    d = ggx_d(hz, alpha)
    lo = ggx_lambda(woz, alpha)
    li = ggx_lambda(wiz, alpha)
    g = 1.0 / (1.0 + lo + li)
    cos_h = wix * hx + wiy * hy + wiz * hz
    common = d * g / (4.0 * woz)
    pdf = d / (1.0 + lo) / (4.0 * woz)
    return (
        common * schlick(prm[0], cos_h),
        common * schlick(prm[1], cos_h),
        common * schlick(prm[2], cos_h),
        pdf,
    )


@njit(cache=True, inline="always")
def sample_ggx_vndf(
    wox: float, woy: float, woz: float, alpha: float, u1: float, u2: float
) -> tuple[float, float, float]:
    r"""A microfacet normal m from the visible normals of wo (woz > 0), by spherical caps
    (Dupuy and Benyoub 2023, "Sampling Visible GGX Normals with Spherical Caps", listing 3).

    Stretched by alpha, the GGX microsurface is the unit hemisphere, and the visible normals
    of the hemisphere seen from a unit direction v are the halfway vectors between v and the
    points of the unit sphere's cap :math:`z > -v_z`, drawn uniformly: :math:`z = (1 - u_1)
    (1 + v_z) - v_z`, :math:`\phi = 2 \pi u_2`. The normal is then unstretched. Its density is
    Heitz's (2018) :math:`D_{wo}(m) = G_1(wo) \max(0, wo \cdot m) D(m) / \cos\theta_o`, as
    with Heitz's own construction (a frame around v and a warped disk), which it replaced:
    three square roots instead of six, one division and one branch fewer.
    """
    # wo stretched to the hemisphere configuration, normalised
    vx = alpha * wox
    vy = alpha * woy
    vz = woz
    vl = fsqrt(vx * vx + vy * vy + vz * vz)
    vx /= vl
    vy /= vl
    vz /= vl
    # a uniform point of the spherical cap z in (-vz, 1]
    z = (1.0 - u1) * (1.0 + vz) - vz
    sin_t = fsqrt(max(0.0, 1.0 - z * z))
    sin_phi, cos_phi = sincos_pi(2.0 * u2)
    # the halfway vector (unnormalised), unstretched
    mx = alpha * (sin_t * cos_phi + vx)
    my = alpha * (sin_t * sin_phi + vy)
    mz = max(1e-9, z + vz)
    ml = fsqrt(mx * mx + my * my + mz * mz)
    return mx / ml, my / ml, mz / ml


@njit(cache=True, inline="always")
def bsdf_sample(
    kind: int, prm: tuple, wox: float, woy: float, woz: float, u0: float, u1: float, u2: float
) -> tuple[float, float, float, float, float, float, float, bool, bool]:
    """Sample wi: (wi xyz, weight rgb = f |cos| / pdf, pdf, is_delta, ok); ``prm`` as for
    :func:`bsdf_eval`."""
    if kind == DIELECTRIC:
        eta = prm[4]
        cos_o = woz
        sgn = 1.0
        if cos_o < 0.0:  # leaving the medium: relative eta inverts
            eta = 1.0 / eta
            cos_o = -cos_o
            sgn = -1.0
        f = fresnel_dielectric(cos_o, eta)
        if u0 < f:
            return -wox, -woy, woz, 1.0, 1.0, 1.0, f, True, True
        sin2_t = (1.0 - cos_o * cos_o) / (eta * eta)
        cos_t = fsqrt(max(0.0, 1.0 - sin2_t))
        # wt = -wo / eta + (cos_o / eta - cos_t) n, with n on wo's side
        k = cos_o / eta - cos_t
        wix = -wox / eta
        wiy = -woy / eta
        wiz = -woz / eta + k * sgn
        scale = 1.0 / (eta * eta)
        return wix, wiy, wiz, scale, scale, scale, 1.0 - f, True, True
    flip = woz < 0.0
    if flip:
        woz = -woz
    if woz <= 0.0:
        return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, False, False
    if kind == DIFFUSE:
        # cosine-weighted hemisphere (Malley's method)
        r = fsqrt(u1)
        sin_phi, cos_phi = sincos_pi(2.0 * u2)
        wix = r * cos_phi
        wiy = r * sin_phi
        wiz = fsqrt(max(0.0, 1.0 - u1))
        if wiz <= 0.0:
            return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, False, False
        pdf = wiz * INV_PI
        if flip:
            wiz = -wiz
        return wix, wiy, wiz, prm[0], prm[1], prm[2], pdf, False, True
    alpha = prm[3]
    mx, my, mz = sample_ggx_vndf(wox, woy, woz, alpha, u1, u2)
    dot = wox * mx + woy * my + woz * mz
    wix = -wox + 2.0 * dot * mx
    wiy = -woy + 2.0 * dot * my
    wiz = -woz + 2.0 * dot * mz
    if wiz <= 0.0 or dot <= 0.0:
        return 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, False, False
    lo = ggx_lambda(woz, alpha)
    li = ggx_lambda(wiz, alpha)
    g_over_g1 = (1.0 + lo) / (1.0 + lo + li)
    pdf = ggx_d(mz, alpha) / (1.0 + lo) / (4.0 * woz)
    if flip:
        wiz = -wiz
    return (
        wix, wiy, wiz,
        schlick(prm[0], dot) * g_over_g1,
        schlick(prm[1], dot) * g_over_g1,
        schlick(prm[2], dot) * g_over_g1,
        pdf, False, True,
    )


# ------------------------------------------------------------------ batched (tests, tools)


@njit(cache=True, parallel=True)
def eval_batch(kind: int, prm: np.ndarray, wo: np.ndarray, wi: np.ndarray) -> np.ndarray:
    """(N, 4) rows of (f|cos| rgb, pdf) for local wo (3,) and local wi (N, 3)."""
    out = np.empty((wi.shape[0], 4))
    prm5 = material_params(prm)
    for k in prange(wi.shape[0]):
        r = bsdf_eval(kind, prm5, wo[0], wo[1], wo[2], wi[k, 0], wi[k, 1], wi[k, 2])
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = r
    return out


@njit(cache=True, parallel=True)
def sample_batch(kind: int, prm: np.ndarray, wo: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N, 9) rows of (wi xyz, weight rgb, pdf, delta, ok) for local wo (3,) and u (N, 3)."""
    out = np.empty((u.shape[0], 9))
    prm5 = material_params(prm)
    for k in prange(u.shape[0]):
        wx, wy, wz, fr, fg, fb, pdf, delta, ok = bsdf_sample(
            kind, prm5, wo[0], wo[1], wo[2], u[k, 0], u[k, 1], u[k, 2]
        )
        out[k, 0], out[k, 1], out[k, 2] = wx, wy, wz
        out[k, 3], out[k, 4], out[k, 5] = fr, fg, fb
        out[k, 6] = pdf
        out[k, 7] = 1.0 if delta else 0.0
        out[k, 8] = 1.0 if ok else 0.0
    return out
