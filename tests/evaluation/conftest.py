"""A tiny synthetic ego dataset (EgoClip + EgoMCQ, 64^2 clips of 8 frames), built once."""

import pytest

from leanvl.data.synth import generate
from leanvl.data.synth.dataset import SynthConfig

TINY_EGO = SynthConfig(
    train=0,
    val=0,
    test=0,
    frames=8,
    size=64,
    ego=True,
    ego_videos=2,
    ego_mcq_videos=5,
    ego_clips_per_video=5,
    workers=1,
)


@pytest.fixture(scope="session")
def tiny_ego(tmp_path_factory):
    """Folder of the tiny ego dataset (annotations/egomcq.json, videos_ego/<uid>/0.mp4)."""
    return generate(tmp_path_factory.mktemp("synth") / "ego", TINY_EGO)
