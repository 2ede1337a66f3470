"""Training and evaluation recipes (Lightning lives here and only here).

``leanvl.models``, ``leanvl.data`` and ``leanvl.video`` never import this package. Entry points:
:func:`leanvl.training.runner.train`, :func:`leanvl.training.runner.evaluate` (the ``leanvl
train`` / ``leanvl eval`` commands) and :func:`leanvl.training.demo.run_demo` (``leanvl demo``).
"""

from leanvl.training.config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "load_train_config"]
