"""Model families. Importing this package registers every family and preset.

One file per family: ``allinone.py`` (All-in-one, CVPR'23), ``svitt.py`` (SViTT / SViTT-Ego,
CVPR'23), ``svitt_ego.py`` (SViTT-Ego: EgoNCE pretraining, EgoMCQ), ``videopanda.py``
(Video-Panda, CVPR'25). Shared blocks live in ``leanvl.layers``.
"""

from leanvl.models import allinone, svitt, svitt_ego, videopanda  # noqa: F401
