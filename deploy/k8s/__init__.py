"""Kubernetes and KServe manifests for a models directory served by the tfship/TF Serving image.

>>> from tfship.deploy.k8s import RenderOptions, render, parse_storage
>>> options = RenderOptions(image="acme/models:1", storage=parse_storage("pvc:models"))
>>> rendered = render("models", options)                                     # doctest: +SKIP
>>> rendered.write("k8s/")                                                   # doctest: +SKIP

See render.py for the resources, probes.py for the readiness and termination design.
"""

from __future__ import annotations

from .kserve import render_kserve
from .options import RenderOptions, Storage, check_image_reference, parse_storage
from .probes import ProbeTiming
from .render import Rendered, render
from .resources import Resources, ThreadFlags, thread_flags

__all__ = [
    "ProbeTiming",
    "RenderOptions",
    "Rendered",
    "Resources",
    "Storage",
    "ThreadFlags",
    "check_image_reference",
    "parse_storage",
    "render",
    "render_kserve",
    "thread_flags",
]
