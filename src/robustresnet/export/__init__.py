"""Publishing a finished run: a RobustBench submission and a model card.

Both start from the run's evaluation report and export exactly the weights it evaluated.
"""

from .card import CardExport, export_card
from .robustbench import RobustBenchExport, export_robustbench

__all__ = ["CardExport", "RobustBenchExport", "export_card", "export_robustbench"]
