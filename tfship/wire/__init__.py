"""Wire code shared by the client and the server: written once, used by both sides.

* :mod:`tfship.wire.dtypes` - TensorFlow DataType <-> numpy dtype table
* :mod:`tfship.wire.fields` - protobuf wire-format primitives (varints, keys, field iteration)
* :mod:`tfship.wire.tensor` - numpy <-> TensorProto (any generated class), via the wire format
* :mod:`tfship.wire.predict` - PredictRequest/PredictResponse framing (client writes, server splits)
* :mod:`tfship.wire.json`   - numpy <-> TF Serving REST JSON (orjson, ``{"b64": ...}``)
* :mod:`tfship.wire.protos` - tfship's own TF-free copies of the TF Serving messages (client side)

Nothing here imports TensorFlow.
"""
