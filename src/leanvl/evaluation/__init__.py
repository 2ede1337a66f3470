"""Evaluation passes that run a model over a benchmark and return its metrics (no Lightning).

:mod:`leanvl.evaluation.egomcq`: EgoMCQ intra-/inter-video accuracy of a dual encoder
(SViTT-Ego, EgoVLP protocol).
"""

from leanvl.evaluation.egomcq import (
    SViTTTextCollator,
    egomcq_dataset,
    egomcq_scores,
    evaluate_egomcq,
    svitt_text_ids,
)

__all__ = [
    "SViTTTextCollator",
    "egomcq_dataset",
    "egomcq_scores",
    "evaluate_egomcq",
    "svitt_text_ids",
]
