"""Built-in synthetic temporal video-language benchmark (the embedded default dataset).

Procedural clips of coloured shapes whose captions, questions and answers are computed from a
scene description, with static questions (any frame answers them) and temporal ones (answers
flip when the clip plays backwards). It lets every leanvl pipeline run end to end without a
download and measures what SViTT (Li et al., CVPR 2023) and All-in-one (Wang et al., CVPR 2023)
are about: whether a model uses frame order.

Modules: :mod:`~leanvl.data.synth.scene` (descriptions, reversal, random scenes),
:mod:`~leanvl.data.synth.render` (numpy frames), :mod:`~leanvl.data.synth.text` (captions,
questions, answers, narrations), :mod:`~leanvl.data.synth.dataset` (files on disk),
:mod:`~leanvl.data.synth.preview` (contact sheet).

Example::

    from leanvl.data.synth import SynthConfig, generate
    root = generate("data/synth", SynthConfig(train=200, val=20, test=20))
"""

from leanvl.data.synth.dataset import GENERATOR_VERSION, SynthConfig, generate, is_generated
from leanvl.data.synth.preview import write_preview
from leanvl.data.synth.render import render_scene
from leanvl.data.synth.scene import Scene, reverse_scene, scene_from_dict
from leanvl.data.synth.text import Question, answer, caption, question_text

__all__ = [
    "GENERATOR_VERSION",
    "Question",
    "Scene",
    "SynthConfig",
    "answer",
    "caption",
    "generate",
    "is_generated",
    "question_text",
    "render_scene",
    "reverse_scene",
    "scene_from_dict",
    "write_preview",
]
