"""snlad: multi-class anomaly detection with structural teacher-student normality learning."""

__version__ = "0.1.0"
