"""The write-ups' experiments as one command each (``ddpm study``): arms trained with one budget, scored alike,
with the uncertainty of every number and a verdict per claim."""
from .catalog import STUDIES, Arm, Study, describe, find_study
from .results import write
from .runner import StudySettings, run_study

__all__ = ["STUDIES", "Arm", "Study", "StudySettings", "describe", "find_study", "run_study", "write"]
