"""What the V2 REST and gRPC front ends share: names, metadata, readiness and the infer call.

Addressing (documented in README "Open Inference Protocol (V2)"):

* ``model_version`` / ``/versions/{v}``: digits are a version number; any other string is a TF
  Serving version label (``/v2/models/half/versions/stable/infer``); empty is the latest version.
* the signature: ``serving_default`` unless the request parameter ``signature_name`` names another
  (``{"parameters": {"signature_name": "classify_x"}, ...}``; gRPC: ``parameters["signature_name"]``).
* metadata describes ``serving_default`` (or the model's only signature) of the version asked for;
  ``versions`` lists the AVAILABLE versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfship.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, ServingError
from tfship.wire import dtypes, v2

from ..data_plane import DEFAULT_SIGNATURE, DataPlane, ModelRef

__all__ = [
    "SERVER_NAME", "EXTENSIONS", "PLATFORM", "SIGNATURE_PARAMETER", "TensorMeta", "ModelMeta",
    "model_ref", "signature_of", "model_metadata", "model_ready", "server_ready", "infer", "server_version",
]

SERVER_NAME = "tfship-model-server"
#: what tritonclient and KServe's clients look for; binary_tensor_data is the binary extension
EXTENSIONS = ("binary_tensor_data",)
#: Triton's platform name for a TensorFlow SavedModel
PLATFORM = "tensorflow_savedmodel"
#: the request parameter that selects a signature other than serving_default
SIGNATURE_PARAMETER = "signature_name"
_INT64_MAX = 2**63 - 1


def server_version() -> str:
    from tfship import __version__

    return str(__version__)


def model_ref(name: str, version: str) -> ModelRef:
    """The data plane's reference for a V2 model name and version string (see module doc)."""
    if not name:
        raise InvalidArgumentError("A model name is required (V2 model_name / /v2/models/{name}).")
    if not version:
        return ModelRef(name)
    if version.isascii() and version.isdigit():
        number = int(version)
        if number > _INT64_MAX:
            raise InvalidArgumentError(f"Model version {version} is out of range (int64).")
        return ModelRef(name, number)
    return ModelRef(name, label=version)


def signature_of(parameters: dict[str, Any]) -> str:
    """The signature a request names (``""`` = serving_default)."""
    value = parameters.get(SIGNATURE_PARAMETER, "")
    if not isinstance(value, str):
        raise InvalidArgumentError(f"Parameter {SIGNATURE_PARAMETER!r} must be a string (a SignatureDef key).")
    return value


@dataclass(frozen=True)
class TensorMeta:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMeta:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMeta]
    outputs: list[TensorMeta]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "versions": self.versions, "platform": self.platform,
                "inputs": [vars(t) for t in self.inputs], "outputs": [vars(t) for t in self.outputs]}


def _tensors(infos: Any) -> list[TensorMeta]:
    out = []
    for alias in sorted(infos):
        info = infos[alias]
        shape = [] if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
        out.append(TensorMeta(alias, v2.datatype_for_tf(dtypes.by_enum(info.dtype).name), shape))
    return out


def _default_signature(name: str, signature_defs: Any) -> Any:
    if DEFAULT_SIGNATURE in signature_defs:
        return signature_defs[DEFAULT_SIGNATURE]
    served = [k for k in signature_defs if not k.startswith("__")]
    if len(served) == 1:
        return signature_defs[served[0]]
    raise FailedPreconditionError(
        f"Model {name!r} has no {DEFAULT_SIGNATURE!r} signature; V2 metadata describes one signature "
        f"(signatures: {', '.join(sorted(served)) or 'none'}). Infer with parameters.signature_name.", model=name)


def model_metadata(plane: DataPlane, name: str, version: str, *, entrypoint: str) -> ModelMeta:
    """V2 model metadata of the version asked for (NOT_FOUND when it is not AVAILABLE)."""
    ref = model_ref(name, version)
    meta = plane.model_metadata(ref, entrypoint=entrypoint)
    statuses = plane.model_status(ModelRef(name), entrypoint=entrypoint)
    versions = sorted(s.version for s in statuses if s.state.name == "AVAILABLE")
    signature = _default_signature(name, meta.signature_defs)
    return ModelMeta(name, [str(v) for v in versions], PLATFORM, _tensors(signature.inputs),
                     _tensors(signature.outputs))


def model_ready(plane: DataPlane, name: str, version: str, *, entrypoint: str) -> bool:
    """Whether the version (or label, or latest) serves now; NOT_FOUND for a model the server
    does not know (a misspelt name is a mistake to report, not "not ready")."""
    ref = model_ref(name, version)
    try:
        plane.model_metadata(ref, entrypoint=entrypoint)
        return True
    except NotFoundError:
        plane.model_status(ModelRef(name), entrypoint=entrypoint)  # raises NOT_FOUND for an unknown model
        return False


def server_ready(plane: DataPlane) -> bool:
    """Every configured model has an AVAILABLE version (and there is at least one model)."""
    names = plane.core.manager.model_names()
    if not names:
        return False
    for name in names:
        try:
            if not any(s.state.name == "AVAILABLE" for s in plane.model_status(ModelRef(name))):
                return False
        except ServingError:
            return False
    return True


async def infer(plane: DataPlane, request: v2.InferRequest, timeout: float | None, *,
                entrypoint: str) -> v2.InferResponse:
    """Run a V2 request through the data plane: the signature's outputs (or the ones asked for),
    in the order asked for, and the version that served."""
    ref = model_ref(request.model_name, request.model_version)
    wanted = [o.name for o in request.outputs]
    served = await plane.predict(ref, signature_of(request.parameters), request.inputs, wanted, timeout,
                                 entrypoint=entrypoint)
    outputs = served.value
    if wanted:
        outputs = {n: outputs[n] for n in wanted if n in outputs}
    return v2.InferResponse(request.model_name, str(served.version), request.id, outputs)
