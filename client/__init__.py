"""Call a TF Serving compatible server (the real image or tfship-model-server) from Python.

TensorFlow-free: ``pip install 'tfship[client]'`` and ``import tfship.client`` never import it.

>>> from tfship.client import connect
>>> with connect("grpc://127.0.0.1:8500") as client:            # doctest: +SKIP
...     client.wait_until_available("half_plus_two", timeout=30)
...     client.predict("half_plus_two", np.array([1.0, 2.0], np.float32))
array([2.5, 3. ], dtype=float32)

* :func:`connect` - ``grpc://``, ``grpcs://``, ``http://``, ``https://`` -> :class:`Client`; ``v2+`` in
  front (``v2+grpc://``, ``v2+http://``) for the Open Inference Protocol (Triton, KServe, MLServer)
* :meth:`Client.predict` / ``classify`` / ``regress`` / ``metadata`` / ``status`` /
  ``wait_until_available`` / ``predict_batches`` / ``reload_config``
* :func:`predict_batches` - large inputs in ordered, concurrent batches
* :meth:`Client.batcher` - many concurrent small calls merged into one request (:mod:`tfship.client.batcher`)
* :mod:`tfship.client.aio` - the same API for asyncio (imported only when used)
* :func:`check_parity` -> :class:`ParityReport` - served outputs vs the in-memory model
* :class:`ClientConfig`, :class:`RetryPolicy`, :class:`FaultPolicy`, :class:`TlsConfig` - explicit
  configuration (:class:`FaultPolicy`: what a client over several replicas does about one that hangs)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tfship.client.base import Client, ModelRef
from tfship.client.config import ClientConfig, FaultPolicy, RetryPolicy, TlsConfig
from tfship.client.connect import connect
from tfship.client.types import (
    ClassifyResult,
    ModelMetadata,
    Prediction,
    SignatureInfo,
    TensorSpec,
    VersionStatus,
)

if TYPE_CHECKING:
    from tfship.client.batching import predict_batches
    from tfship.client.parity import OutputParity, ParityReport, check_parity

__all__ = [
    "connect", "Client", "ModelRef", "ClientConfig", "FaultPolicy", "RetryPolicy", "TlsConfig", "ClassifyResult",
    "Prediction", "ModelMetadata", "SignatureInfo", "TensorSpec", "VersionStatus", "predict_batches",
    "check_parity", "ParityReport", "OutputParity",
]

# Imported on first use so `import tfship.client` stays fast (cold start matters for CLIs).
_LAZY = {
    "predict_batches": "tfship.client.batching",
    "check_parity": "tfship.client.parity",
    "ParityReport": "tfship.client.parity",
    "OutputParity": "tfship.client.parity",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfship.client' has no attribute {name!r}")
