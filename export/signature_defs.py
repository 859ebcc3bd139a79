"""Read the SignatureDefs of a SavedModel from ``saved_model.pb`` without loading the model.

This is what TF Serving sees: it works on TF1 SavedModels that ``tf.saved_model.load`` refuses
(e.g. ``saved_model_half_plus_three``) and costs no graph import. Needs the TensorFlow protos.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfship.errors import ExportError
from tfship.manifest import Signature, TensorSpec
from tfship.wire import dtypes

__all__ = ["read_signature_defs"]


def _spec(key: str, info: object) -> TensorSpec:
    dtype = getattr(info, "dtype", 0)
    try:
        dtype_name = dtypes.by_enum(dtype).name
    except Exception:
        dtype_name = "DT_INVALID" if dtype == 0 else f"DT_{dtype}"
    shape_proto = info.tensor_shape  # type: ignore[attr-defined]
    shape = None if shape_proto.unknown_rank else [int(d.size) for d in shape_proto.dim]
    return TensorSpec(key, dtype_name, shape)


def read_signature_defs(
    saved_model_dir: str | os.PathLike[str], tag: str = "serve"
) -> dict[str, Signature]:
    """All SignatureDefs of the MetaGraph tagged ``tag``, by signature key (sorted).

    Raises :class:`ExportError` when there is no readable ``saved_model.pb`` or no such MetaGraph.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(saved_model_dir) / "saved_model.pb"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"no saved_model.pb in {saved_model_dir}: not a SavedModel version") from None
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except Exception as exc:
        raise ExportError(f"{path} is not a SavedModel proto: {exc}") from exc
    for meta_graph in proto.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return {
                key: Signature(
                    inputs=[_spec(k, v) for k, v in sorted(sig.inputs.items())],
                    outputs=[_spec(k, v) for k, v in sorted(sig.outputs.items())],
                    name=key,
                    method=sig.method_name,
                )
                for key, sig in sorted(meta_graph.signature_def.items())
            }
    tags = [list(m.meta_info_def.tags) for m in proto.meta_graphs]
    raise ExportError(f"{path} has no MetaGraph tagged {tag!r} (tags: {tags})")
