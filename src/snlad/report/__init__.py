"""The visual report (``snlad report``) and the one-class vs multi-class figure."""

from snlad.report.onevsmulti import onevsmulti_figure
from snlad.report.page import build_report

__all__ = ["build_report", "onevsmulti_figure"]
