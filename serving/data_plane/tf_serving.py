"""TF Serving's status and metadata messages from the data plane's values.

Both TF Serving front ends answer with these messages (gRPC as they are, REST as their JSON form),
so they are built once, here, and neither front end imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.manager import VersionStatus
from .types import ModelMetadata

__all__ = ["status_response", "metadata_response", "signature_def_map", "message_json"]


def status_response(statuses: Sequence[VersionStatus]) -> Any:
    """A ``GetModelStatusResponse`` with one entry per version, in the given order."""
    from tensorflow_serving.apis import get_model_status_pb2

    response = get_model_status_pb2.GetModelStatusResponse()
    for st in statuses:
        entry = response.model_version_status.add()
        entry.version = st.version
        entry.state = int(st.state)
        entry.status.SetInParent()  # upstream always fills status (OK + "" when healthy)
        if st.error is not None:
            entry.status.error_code = int(st.error.code)
            entry.status.error_message = st.error.message
    return response


def signature_def_map(metadata: ModelMetadata) -> Any:
    """The ``SignatureDefMap`` of every SignatureDef of the version."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in metadata.signature_defs.items():
        sig_map.signature_def[key].CopyFrom(sig)
    return sig_map


def metadata_response(metadata: ModelMetadata) -> Any:
    """A ``GetModelMetadataResponse`` carrying the SignatureDefMap (TF Serving compat spec §5.4)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = metadata.model
    response.model_spec.version.value = metadata.version
    response.metadata["signature_def"].Pack(signature_def_map(metadata))
    return response


def message_json(message: Any) -> Any:
    """A message as TF Serving's REST API writes it (proto field names, defaults included)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
