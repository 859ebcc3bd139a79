"""TensorFlow's ``tensorflow.ProfilerService`` on the model server's gRPC port (``--enable_profiler``,
on by default), as upstream registers it next to PredictionService and ModelService.

TensorBoard's "Capture profile" and ``tf.profiler.experimental.client.trace("grpc://HOST:PORT",
logdir, duration_ms)`` send ``Profile``: the server records ``duration_ms`` of its own activity
(TF's in-process profiler: host events of every model run) while it keeps serving, writes the
XSpace to ``repository_root/session_id/HOST.xplane.pb`` as upstream's profiler service does (the
client reads that directory: it is the logdir it passed), and answers ``empty_trace=false`` (plus
the XSpace itself when ``emit_xspace`` is set). TF's Python API only starts its C++ profiler
server on a port of its own, bound to every interface; this serves the same RPC on the port the
server already has. The two messages are encoded by hand (TF's wheel ships no Python module for
profiler_service.proto); field numbers are those of tsl/profiler/protobuf/profiler_service.proto.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from pathlib import Path
from typing import Any

import grpc

from tfship.errors import InvalidArgumentError
from tfship.wire.fields import iter_fields, len_field

__all__ = ["add_profiler_service", "MAX_DURATION_MS"]

log = logging.getLogger("tfship.serving")

#: A capture longer than this is refused (TensorBoard's default is 1 s; its form allows minutes).
MAX_DURATION_MS = 10 * 60 * 1000
_DURATION, _REPOSITORY_ROOT, _SESSION_ID, _HOST_NAME, _EMIT_XSPACE = 1, 5, 6, 7, 9
_EMPTY_TRACE, _XSPACE = 7, 8


def _parse(raw: bytes) -> dict[int, Any]:
    fields: dict[int, Any] = {}
    for number, _, value in iter_fields(raw):
        if number in (_DURATION, _EMIT_XSPACE):
            fields[number] = int(value)
        elif number in (_REPOSITORY_ROOT, _SESSION_ID, _HOST_NAME):
            fields[number] = bytes(value).decode("utf-8")
    return fields


def _response(empty: bool, xspace: bytes | None) -> bytes:
    out = bytearray([_EMPTY_TRACE << 3, 1 if empty else 0])
    if xspace is not None:
        out += len_field(_XSPACE, xspace)
    return bytes(out)


def _capture(duration_s: float) -> bytes:
    """Run TF's profiler for ``duration_s`` in this process; the XSpace it recorded (serialized)."""
    import time

    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tfship-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            time.sleep(duration_s)  # the capture window itself: requests keep running meanwhile
        finally:
            tf.profiler.experimental.stop()
        planes = sorted(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
        return planes[-1].read_bytes() if planes else b""


class _Profiler:
    def __init__(self) -> None:
        self._busy = asyncio.Lock()

    async def profile(self, raw: bytes, context: Any) -> bytes:
        try:
            request = _parse(raw)
        except InvalidArgumentError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed ProfileRequest: {exc.message}")
        duration_ms = request.get(_DURATION) or 1000
        if duration_ms > MAX_DURATION_MS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"duration_ms {duration_ms} is over the {MAX_DURATION_MS} ms limit")
        if self._busy.locked():  # TF's profiler runs one session per process, as upstream's
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Another profiling session is active; retry later")
        async with self._busy:
            loop = asyncio.get_running_loop()
            xspace = await loop.run_in_executor(None, _capture, duration_ms / 1000.0)
        root, session = request.get(_REPOSITORY_ROOT), request.get(_SESSION_ID)
        if xspace and root and session:
            host = request.get(_HOST_NAME) or socket.gethostname()
            target = Path(root) / session / f"{host}.xplane.pb"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(xspace)
            log.info("Profile of %d ms written to %s", duration_ms, target)
        return _response(not xspace, xspace if request.get(_EMIT_XSPACE) else None)


def add_profiler_service(server: grpc.aio.Server) -> None:
    """Register ``tensorflow.ProfilerService/Profile`` on ``server`` (before it starts)."""
    handler = grpc.method_handlers_generic_handler(
        "tensorflow.ProfilerService", {"Profile": grpc.unary_unary_rpc_method_handler(_Profiler().profile)})
    server.add_generic_rpc_handlers((handler,))
