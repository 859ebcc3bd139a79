"""gRPC transport: TF Serving's PredictionService/ModelService, called by full method name.

Requests are assembled at the wire level by :mod:`tfship.wire.predict` (tensor bytes spliced into
the PredictRequest without a Python-level copy into a message), and responses are read as raw bytes
and decoded there too, so a large ``float_val`` answer costs about one ``np.frombuffer`` copy.
Only our TF-free messages are used.

Every request builder, response decoder and the status-to-error mapping are module functions
shared with the asyncio client (:mod:`tfship.client.aio.grpc_transport`); the classes do only I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from tfship.client.base import CONFIG_REF, Client, ModelRef
from tfship.client.config import ClientConfig, TlsConfig
from tfship.client.endpoints import Endpoint, Target, is_ip_literal, resolve_addresses
from tfship.client.examples import input_proto
from tfship.client.resilience import current_endpoint
from tfship.client.types import (
    STATE_NAMES,
    ClassifyResult,
    ModelMetadata,
    SignatureInfo,
    TensorSpec,
    VersionStatus,
)

from tfship.errors import InvalidArgumentError, ServingError, UnavailableError, error_for_code
from tfship.wire import dtypes
from tfship.wire.predict import decode_predict_response, encode_predict_request
from tfship.wire.protos import serving_wire_pb2 as pb

__all__ = [
    "GrpcClient", "METHODS", "predict_request", "channel_target", "channel_setup", "replica_target", "rpc_error",
    "examples_request", "decode_classify", "decode_regress", "metadata_request", "decode_metadata",
    "status_request", "decode_status", "reload_request", "decode_reload",
]

METHODS = {
    "Predict": "/tensorflow.serving.PredictionService/Predict",
    "Classify": "/tensorflow.serving.PredictionService/Classify",
    "Regress": "/tensorflow.serving.PredictionService/Regress",
    "GetModelMetadata": "/tensorflow.serving.PredictionService/GetModelMetadata",
    "GetModelStatus": "/tensorflow.serving.ModelService/GetModelStatus",
    "HandleReloadConfigRequest": "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
}


def model_spec(ref: ModelRef, *, with_signature: bool = True) -> pb.ModelSpec:
    spec = pb.ModelSpec(name=ref.name)
    if ref.version is not None:
        spec.version.value = ref.version
    elif ref.label:
        spec.version_label = ref.label
    if with_signature and ref.signature:
        spec.signature_name = ref.signature
    return spec


def predict_request(ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str] = ()) -> bytes:
    """Serialized PredictRequest for ``ref`` (framing: :func:`tfship.wire.predict.encode_predict_request`)."""
    return encode_predict_request(model_spec(ref).SerializeToString(), inputs, output_filter)


def tensor_spec(info: pb.TensorInfo) -> TensorSpec:
    try:
        dtype = dtypes.by_enum(info.dtype).name
    except InvalidArgumentError:
        dtype = "DT_INVALID"
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return TensorSpec(dtype, shape, info.name)


def signature_info(sig: pb.SignatureDef) -> SignatureInfo:
    return SignatureInfo(
        sig.method_name,
        {k: tensor_spec(v) for k, v in sorted(sig.inputs.items())},
        {k: tensor_spec(v) for k, v in sorted(sig.outputs.items())},
    )


def _read_file(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def channel_target(target: Target) -> str:
    """The grpcio target string: ``host:port``, ``dns:///NAME:PORT``, or ``ipv4:a:p,b:p`` for a list.

    A list of replicas becomes one ``ipv4:``/``ipv6:`` target (names resolved once, here) so a
    single channel balances over all of them; gRPC's own ``dns:///`` resolver handles DNS names
    and re-resolves when a replica's connection drops.
    """
    if target.dns_name is not None:
        host = f"[{target.dns_name}]" if ":" in target.dns_name else target.dns_name
        return f"dns://{target.dns_server or ''}/{host}:{target.dns_port}"
    if len(target.endpoints) == 1:
        return target.endpoints[0].netloc
    addresses: list[tuple[str, int]] = []
    for endpoint in target.endpoints:
        hosts = [endpoint.host] if is_ip_literal(endpoint.host) else resolve_addresses(endpoint.host, endpoint.port)
        addresses += [(host, endpoint.port) for host in hosts if (host, endpoint.port) not in addresses]
    if all(":" not in host for host, _ in addresses):
        return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    # One target holds one address family: IPv4 replicas join an IPv6 list as mapped addresses.
    return "ipv6:" + ",".join(f"[{host if ':' in host else '::ffff:' + host}]:{port}" for host, port in addresses)


def channel_setup(target: Target, config: ClientConfig
                  ) -> tuple[str, list[tuple[str, Any]], grpc.ChannelCredentials | None]:
    """The channel's target string, options and TLS credentials (None = plaintext), for the sync
    and the grpc.aio channel alike.

    The clients open one channel per replica (:func:`replica_target`) and steer each attempt
    themselves (:mod:`tfship.client.resilience`). With ``FaultPolicy(enabled=False)`` one channel
    holds a subchannel per replica (a list, or ``dns:///NAME:PORT``) and grpcio's
    ``round_robin`` policy spreads the calls over the READY ones. Either way a replica that went
    away is tried again after at most ``ClientConfig.reconnect_backoff_max``; keepalive pings
    (``FaultPolicy.keepalive_seconds``) close the connection to a frozen one.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", config.max_send_message_bytes),
        ("grpc.max_receive_message_length", config.max_receive_message_bytes),
    ]
    faults = config.faults
    if faults.enabled and faults.keepalive_seconds > 0:
        # Pings only while calls are in flight, and at most two without data in between
        # (grpcio's default), which servers' default ping policy (TF Serving's included) accepts.
        options += [("grpc.keepalive_time_ms", int(faults.keepalive_seconds * 1000)),
                    ("grpc.keepalive_timeout_ms", int(faults.keepalive_timeout_seconds * 1000))]
    address = channel_target(target)
    backoff_ms = int(config.reconnect_backoff_max * 1000)
    options += [("grpc.max_reconnect_backoff_ms", backoff_ms),
                ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, 500)),
                ("grpc.min_reconnect_backoff_ms", min(backoff_ms, 500))]
    if target.several:
        options.append(("grpc.lb_policy_name", "round_robin"))
    tls = config.tls
    if not (target.secure or tls is not None):
        return address, options, None
    tls = tls or TlsConfig()
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read_file(tls.root_certificates),
        private_key=_read_file(tls.client_key),
        certificate_chain=_read_file(tls.client_cert),
    )
    server_name = next((e.server_name for e in target.endpoints if e.server_name), None)
    if tls.server_name_override or server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override or server_name))
    return address, options, creds


def replica_target(endpoint: Endpoint) -> Target:
    """The one-server target of a replica's own channel."""
    return Target(endpoint.url, endpoint.scheme, (endpoint,), protocol=endpoint.protocol)


def rpc_error(exc: grpc.RpcError, ref: ModelRef) -> ServingError:
    """The :mod:`tfship.errors` class for a failed RPC (sync or grpc.aio), by status code."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    return error_for_code(code.value[0], details, model=ref.name, version=ref.version, signature=ref.signature)


def examples_request(cls: Any, ref: ModelRef, examples: Sequence[Any], context: Any) -> bytes:
    """A serialized Classification- or RegressionRequest (``cls``) for tf.Example dicts."""
    request = cls(model_spec=model_spec(ref))
    request.input.CopyFrom(input_proto(examples, context))
    return request.SerializeToString()  # type: ignore[no-any-return]


def decode_classify(raw: bytes) -> ClassifyResult:
    result = pb.ClassificationResponse.FromString(raw).result
    labels = [[c.label for c in row.classes] for row in result.classifications]
    scores = [[c.score for c in row.classes] for row in result.classifications]
    return ClassifyResult(np.array(labels, dtype=object).reshape(len(labels), -1),
                          np.array(scores, dtype=np.float32).reshape(len(scores), -1))


def decode_regress(raw: bytes) -> np.ndarray:
    result = pb.RegressionResponse.FromString(raw).result
    return np.array([r.value for r in result.regressions], dtype=np.float32)


def metadata_request(ref: ModelRef) -> bytes:
    return pb.GetModelMetadataRequest(model_spec=model_spec(ref, with_signature=False),  # type: ignore[no-any-return]
                                      metadata_field=["signature_def"]).SerializeToString()


def decode_metadata(raw: bytes, ref: ModelRef) -> ModelMetadata:
    response = pb.GetModelMetadataResponse.FromString(raw)
    # The Any's type_url names tensorflow.serving.SignatureDefMap; the bytes are the same
    # as our own SignatureDefMap, so parse the value directly.
    sigmap = pb.SignatureDefMap.FromString(response.metadata["signature_def"].value)
    version = response.model_spec.version.value if response.model_spec.HasField("version") else 0
    return ModelMetadata(response.model_spec.name or ref.name, version,
                         {k: signature_info(v) for k, v in sorted(sigmap.signature_def.items())})


def status_request(ref: ModelRef) -> bytes:
    return pb.GetModelStatusRequest(  # type: ignore[no-any-return]
        model_spec=model_spec(ref, with_signature=False)).SerializeToString()


def decode_status(raw: bytes) -> list[VersionStatus]:
    response = pb.GetModelStatusResponse.FromString(raw)
    return [
        VersionStatus(s.version, STATE_NAMES.get(s.state, str(s.state)), s.status.error_code,
                      s.status.error_message)
        for s in response.model_version_status
    ]


def reload_request(config: str) -> bytes:
    """Serialized ReloadConfigRequest from a text-format ModelServerConfig."""
    from google.protobuf import text_format

    request = pb.ReloadConfigRequest()
    try:
        text_format.Parse(config, request.config)
    except text_format.ParseError as exc:
        raise InvalidArgumentError(
            f"The model config is not a text-format ModelServerConfig: {exc}",
            hint="Write it as a --model_config_file holds it: model_config_list { config { ... } }") from None
    return request.SerializeToString()


def decode_reload(raw: bytes) -> None:
    """Raise the server's refusal carried in a ReloadConfigResponse's status (gRPC status was OK)."""
    status = pb.ReloadConfigResponse.FromString(raw).status
    if status.error_code:
        raise error_for_code(status.error_code, status.error_message)


class GrpcClient(Client):
    """Client over gRPC (``grpc://host:port``, or ``grpcs://`` for TLS); over several replicas
    one channel per replica, each attempt sent to the replica the client picked for it."""

    transport = "grpc"

    def __init__(self, target: Target, config: ClientConfig) -> None:
        super().__init__(target, config)
        # Over several replicas with fault handling: a channel per replica, opened on first use.
        self._channels: dict[Endpoint, tuple[grpc.Channel, dict[str, Any]]] = {}
        if not self._faults.active:
            self._channel, self._rpc = self._open(target)

    def _open(self, target: Target) -> tuple[grpc.Channel, dict[str, Any]]:
        address, options, creds = channel_setup(target, self.config)
        if creds is not None:
            channel = grpc.secure_channel(address, creds, options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        # Raw bytes in and out: we serialize and parse ourselves.
        return channel, {name: channel.unary_unary(path) for name, path in METHODS.items()}

    def _stubs(self) -> tuple[Endpoint | None, dict[str, Any]]:
        if not self._faults.active:
            return None, self._rpc
        endpoint = current_endpoint() or self._faults.pick()
        assert endpoint is not None
        opened = self._channels.get(endpoint)
        if opened is None:
            with self._lock:
                opened = self._channels.get(endpoint)
                if opened is None:
                    opened = self._channels[endpoint] = self._open(replica_target(endpoint))
        return endpoint, opened[1]

    def _invoke(self, method: str, request: bytes, timeout: float | None, ref: ModelRef) -> bytes:
        endpoint, rpc = self._stubs()
        try:
            return rpc[method](request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            error = rpc_error(exc, ref)
            if endpoint is not None and isinstance(error, UnavailableError) and self._faults.pool is not None:
                self._faults.pool.mark_down(endpoint)
            raise error from None
        except ValueError as exc:  # e.g. "Cannot invoke RPC on closed channel!"
            raise UnavailableError(f"gRPC channel to {self.url} is unusable: {exc}") from None

    def _predict(self, ref: ModelRef, inputs: dict[str, np.ndarray], output_filter: Sequence[str],
                 timeout: float | None) -> tuple[dict[str, np.ndarray], int | None]:
        raw = self._invoke("Predict", predict_request(ref, inputs, output_filter), timeout, ref)
        return decode_predict_response(raw)

    def _classify(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                  timeout: float | None) -> ClassifyResult:
        request = examples_request(pb.ClassificationRequest, ref, examples, context)
        return decode_classify(self._invoke("Classify", request, timeout, ref))

    def _regress(self, ref: ModelRef, examples: Sequence[Any], context: Any,
                 timeout: float | None) -> np.ndarray:
        request = examples_request(pb.RegressionRequest, ref, examples, context)
        return decode_regress(self._invoke("Regress", request, timeout, ref))

    def _metadata(self, ref: ModelRef, timeout: float | None) -> ModelMetadata:
        return decode_metadata(self._invoke("GetModelMetadata", metadata_request(ref), timeout, ref), ref)

    def _status(self, ref: ModelRef, timeout: float | None) -> list[VersionStatus]:
        return decode_status(self._invoke("GetModelStatus", status_request(ref), timeout, ref))

    def _reload_config(self, config: str, timeout: float | None) -> None:
        decode_reload(self._invoke("HandleReloadConfigRequest", reload_request(config), timeout, CONFIG_REF))

    def close(self) -> None:
        self._close_replicas()
        with self._lock:
            channels = [channel for channel, _ in self._channels.values()]
            self._channels.clear()
        for channel in channels:
            channel.close()
        if not self._faults.active:
            self._channel.close()
