"""Practical tools on top of the models: text-to-video search (:mod:`leanvl.tools.index`),
the family adapter they share (:mod:`leanvl.tools.adapters`) and the web app
(:mod:`leanvl.tools.app`, needs the ``app`` extra)."""
