"""Publishing a finished run: a RobustBench submission.

It starts from the run's evaluation report and exports exactly the weights it evaluated.
"""

from .robustbench import RobustBenchExport, export_robustbench

__all__ = ["RobustBenchExport", "export_robustbench"]
