"""`rrn reproduce`: the paper's experiments as sweeps, their cost, and reports against the
published tables."""
