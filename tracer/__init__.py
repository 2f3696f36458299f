"""flowtracer: a wavefront Numba path tracer lit by HDR environment maps."""

__version__ = "0.1.0"
