"""Annotation readers, datasets and video scanning for video-language training and evaluation.

The readers (:mod:`leanvl.data.annotations`) use only the standard library; datasets
(:mod:`leanvl.data.datasets`) and the video scanner (:mod:`leanvl.data.scan`) are imported from
their own modules. Nothing here needs Lightning.
"""

from leanvl.data.annotations import (
    AnnotationError,
    EgoClipRecord,
    EgoMCQRecord,
    MCRecord,
    QARecord,
    RetrievalRecord,
    read_answer_vocab,
    read_egoclip_csv,
    read_egomcq_json,
    read_mc_jsonl,
    read_qa_json,
    read_retrieval_json,
)

__all__ = [
    "AnnotationError",
    "EgoClipRecord",
    "EgoMCQRecord",
    "MCRecord",
    "QARecord",
    "RetrievalRecord",
    "read_answer_vocab",
    "read_egoclip_csv",
    "read_egomcq_json",
    "read_mc_jsonl",
    "read_qa_json",
    "read_retrieval_json",
]
