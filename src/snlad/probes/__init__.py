"""Cross-class interference probes (paper Fig. 2): synthetic anomalies made of other classes' normal content."""

from snlad.data.synthesis import DEFAULT_LAMBDAS
from snlad.probes.cutpaste import CutPasteSettings, run_cutpaste
from snlad.probes.mixup import MixupSettings, run_mixup

__all__ = ["DEFAULT_LAMBDAS", "CutPasteSettings", "MixupSettings", "run_cutpaste", "run_mixup"]
