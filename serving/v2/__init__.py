"""The Open Inference Protocol (KServe V2) front ends, on the same ports as TF Serving's API.

* :mod:`.rest` - ``/v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{name}[/versions/{v}]``,
  ``.../ready`` and ``POST .../infer`` (JSON tensors and the binary tensor data extension), mounted
  in the REST server's ASGI app.
* :mod:`.grpc` - ``inference.GRPCInferenceService`` (ServerLive, ServerReady, ModelReady,
  ServerMetadata, ModelMetadata, ModelInfer) on the gRPC server.
* :mod:`.mapping` - what both share: a V2 model/version to a data plane ModelRef (a number is a
  version, any other string a TF Serving version label), a SignatureDef to V2 tensor metadata,
  readiness, and the infer call itself.

Both are thin adapters: decode with :mod:`tfship.wire.v2` -> :class:`~tfship.serving.data_plane.DataPlane`
-> encode. Versions, acquisition, deadlines, batching, metrics and error mapping are the data
plane's; the two never import TF Serving's front ends (or each other).
"""
