"""Publishing a finished run: a RobustBench submission and a model card."""
