"""`rrn reproduce`: the paper's experiments as sweeps, their cost, and reports against the
published tables."""

# Where and how big an experiment's runs are: as the paper ran them, or on a CPU with 8x8 digits
# (reproduce/scales.py says how each changes the runs).
SCALES = ("full", "smoke", "digits")
