"""A small normalizing-flow library on the unit square (rational-quadratic spline couplings)."""
