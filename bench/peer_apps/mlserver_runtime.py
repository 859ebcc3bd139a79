"""MLServer 1.7 custom runtime serving a bench SavedModel (run by bench/peers.py in its own venv).

MLServer has no TensorFlow runtime of its own; its docs serve other frameworks with a custom runtime:
an ``MLModel`` subclass whose ``load()`` reads the artifact named by ``parameters.uri`` in
model-settings.json and whose ``predict()`` decodes the V2 request with the ``NumpyCodec`` and encodes
the result back. Adaptive batching (``max_batch_size``/``max_batch_time`` in model-settings.json)
happens before ``predict()``: MLServer merges requests along axis 0 and splits the reply.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        signature = tf.saved_model.load(await get_model_uri(self._settings)).signatures["serving_default"]
        (self._alias,) = signature.structured_input_signature[1]
        self._signature = signature
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        (y,) = self._signature(**{self._alias: tf.constant(x, dtype=tf.float32)}).values()
        output = NumpyCodec.encode_output("output_0", np.asarray(y.numpy()))
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[output])
