"""``tfship-model-server``: a drop-in for ``tensorflow_model_server`` (TF Serving compat spec §1).

Startup order as upstream (server.cc ``BuildAndStart``): validate flags, build the model config,
load every model (blocking), start the config poller, then gRPC, then REST. Any start error prints
``Failed to start server. Error: <CODE>: <message>`` to stdout and exits 255. SIGTERM/SIGINT stop
accepting, drain in-flight requests and exit 0.

>>> server = ModelServer.from_flags(["--port=0", "--rest_api_port=8501", ...])   # doctest: +SKIP
>>> server.start(); server.wait()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from tfship.errors import InvalidArgumentError, ServingError, UnimplementedError, UnknownError

from .core.flags import FlagError, ServerFlags, ignored_flag_warnings, usage

__all__ = ["main", "ModelServer"]

log = logging.getLogger("tfship.serving")

#: how long SIGTERM waits for in-flight requests before closing anyway
DRAIN_SECONDS = 30.0


def _validate(f: ServerFlags) -> None:
    if f.port == 0 and not f.grpc_socket_path:
        raise InvalidArgumentError(
            "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set."
        )
    if not f.model_base_path and not f.model_config_file:
        raise InvalidArgumentError(
            "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    if f.batching_parameters_file and not f.enable_batching:
        raise InvalidArgumentError(
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    if f.use_alts_credentials and f.ssl_config_file:
        raise InvalidArgumentError(
            "Either use_alts_credentials must be false or ssl_config_file must be empty."
        )
    if f.use_alts_credentials or f.ssl_config_file:
        # serving in plaintext when TLS was asked for would be worse than refusing to start
        raise UnimplementedError(
            "tfship-model-server does not implement --ssl_config_file / --use_alts_credentials; "
            "terminate TLS in front of it (e.g. a reverse proxy) or use the tensorflow/serving image"
        )
    parallel = (f.tensorflow_session_parallelism, f.tensorflow_intra_op_parallelism,
                f.tensorflow_inter_op_parallelism)
    if all(p > 0 for p in parallel):
        raise InvalidArgumentError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism). Both can't be set."
        )


class ModelServer:
    """The whole server (core + gRPC + REST) built from TF Serving flag values."""

    def __init__(self, flags: ServerFlags | Mapping[str, Any]) -> None:
        self.flags = flags if isinstance(flags, ServerFlags) else ServerFlags.from_values(flags)
        self.core: Any = None
        #: the one data plane under every front end (its routing and observer hooks live here)
        self.data_plane: Any = None
        self.grpc_server: Any = None
        self.rest_server: Any = None
        self.metrics: Any = None
        self.serving_loop: Any = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._stopped = threading.Event()

    @classmethod
    def from_flags(cls, argv: list[str]) -> ModelServer:
        return cls(ServerFlags.parse(argv)[0])

    def _model_config(self) -> Any:
        f = self.flags
        if f.model_config_file:
            from .config.model_config import read_model_config_file

            return read_model_config_file(f.model_config_file)
        from tensorflow_serving.config import model_server_config_pb2 as pb

        config = pb.ModelServerConfig()
        mc = config.model_config_list.config.add()
        mc.name, mc.base_path, mc.model_platform = (
            f.model_name, f.model_base_path, "tensorflow"
        )
        return config

    def start(self) -> None:
        """Load every model (blocking), then serve gRPC and REST. Raises ServingError."""
        f = self.flags
        _validate(f)
        from .core.server_core import CoreOptions, ServerCore
        from .metrics import ServerMetrics

        batching = None
        if f.enable_batching:
            from .config.batching import BatchingParameters, read_batching_parameters_file

            batching = (read_batching_parameters_file(f.batching_parameters_file)
                        if f.batching_parameters_file else BatchingParameters())
        monitoring = None
        if f.monitoring_config_file:
            from .config.monitoring import read_monitoring_config_file

            monitoring = read_monitoring_config_file(f.monitoring_config_file)
        from .event_loop import ServingLoop

        # one loop serves gRPC and REST; its executor bounds the model runs in flight
        self.serving_loop = ServingLoop(
            model_threads=max(1, f.grpc_max_threads, f.rest_api_num_threads)
        ).start()
        options = CoreOptions.from_flags(f, batching=batching, serving_loop=self.serving_loop)
        config = self._model_config()
        from .runtime.custom_ops import register_custom_ops

        register_custom_ops()  # TF Text's ops before any model loads, as upstream's binary links them
        self.metrics = ServerMetrics()
        self.core = ServerCore(options, metrics=self.metrics)
        from .core.memory import freeze_startup_objects

        freeze_startup_objects()  # full collections (one per unload) stay cheap: see core/memory.py
        self.core.start(config)
        from .data_plane import DataPlane

        self.data_plane = DataPlane(self.core, self.serving_loop)
        # logging_config capture sees every served call, whichever front end took it
        self.data_plane.add_observer(self.core.capture.observe)
        self.core.rollout.attach(self.data_plane)  # canary routing and shadowing (tfship only)
        self.core.start_pollers(f.model_config_file or None,
                                f.model_config_file_poll_wait_seconds)
        self._start_grpc()
        self._start_rest(monitoring)

    def _start_grpc(self) -> None:
        from .grpc.server import build_grpc_server
        from .v2.grpc import v2_service_handler

        f = self.flags

        async def start() -> Any:
            server = build_grpc_server(
                self.core,
                self.serving_loop,
                channel_arguments=f.grpc_channel_arguments,
                tensor_content=f.enable_serialization_as_tensor_content,
                health_check=f.enable_grpc_healthcheck_service,
                data_plane=self.data_plane,
                rollout_admin=f.enable_rollout_admin,
            )
            if f.enable_profiler:  # upstream's default: the TF profiler on the gRPC port
                from .grpc.profiler import add_profiler_service

                add_profiler_service(server)
            # the Open Inference Protocol beside TF Serving's services (the names do not collide)
            server.add_generic_rpc_handlers((v2_service_handler(self.data_plane),))
            if f.port:
                address = f"{f.host}:{f.port}"
                try:
                    self.grpc_port = server.add_insecure_port(address)
                except RuntimeError as exc:
                    raise UnknownError(f"Failed to BuildAndStart Server: could not bind {address}: "
                                       f"{exc}") from None
                if not self.grpc_port:
                    raise UnknownError(f"Failed to BuildAndStart Server: could not bind {address}")
            if f.grpc_socket_path:
                server.add_insecure_port(f"unix:{f.grpc_socket_path}")
            await server.start()
            return server

        self.grpc_server = self.serving_loop.call(start())
        log.info("Running gRPC ModelServer at %s:%s ...", f.host, self.grpc_port)

    def _start_rest(self, monitoring: Any) -> None:
        f = self.flags
        port = f.rest_api_port
        if not port:
            return
        if port == f.port:
            log.error("Error: rest_api_port must differ from port; REST API not started.")
            return
        from .rest.server import RestServer

        prometheus_path = (monitoring.path if monitoring is not None
                           and monitoring.prometheus_enabled else None)
        self.rest_server = RestServer(
            self.core,
            host=f.host,
            port=port,
            num_threads=max(1, f.rest_api_num_threads),
            timeout_ms=f.rest_api_timeout_in_ms,
            cors=f.rest_api_enable_cors_support,
            prometheus_path=prometheus_path,
            max_body_bytes=max(0, f.rest_api_max_request_bytes),
            serving_loop=self.serving_loop,
            data_plane=self.data_plane,
            rollout_admin=f.enable_rollout_admin,
        )
        from .v2.rest import V2Rest

        self.rest_server.app.mount(V2Rest(self.data_plane))  # /v2 beside /v1, same port and limits
        self.rest_server.start()
        self.rest_port = self.rest_server.port
        log.info("Exporting HTTP/REST API at:%s:%d ...", f.host, self.rest_port)

    def stop(self, drain_timeout: float = DRAIN_SECONDS) -> None:
        """Stop accepting, let in-flight requests finish (bounded), unload everything."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grpc_done = None
        if self.grpc_server is not None:  # stops accepting now, drains in-flight RPCs (bounded)
            grpc_done = self.serving_loop.submit(self.grpc_server.stop(grace=drain_timeout))
        if self.rest_server is not None:
            self.rest_server.shutdown(drain_timeout)
        if grpc_done is not None:
            grpc_done.result(drain_timeout + 5)
        if self.core is not None:
            self.core.stop(drain_timeout=drain_timeout)
        if self.serving_loop is not None:
            self.serving_loop.stop()

    def wait(self) -> None:
        self._stopped.wait()


def _version_text() -> str:
    from tfship import __version__

    try:
        import tensorflow as tf

        tf_version = tf.__version__
    except ImportError:  # pragma: no cover - the [tf] extra is required to serve anyway
        tf_version = "unavailable"
    return (f"TensorFlow ModelServer: {tf_version}+tfship{__version__}\n"
            f"TensorFlow Library: {tf_version}")


def main(argv: list[str] | None = None) -> None:
    """Console script ``tfship-model-server``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        flags, unknown = ServerFlags.parse(args)
    except FlagError:
        sys.stdout.write(usage())
        sys.stdout.flush()
        sys.exit(255)
    if flags.version:
        print(_version_text(), flush=True)
        sys.exit(0)
    if unknown:
        sys.stdout.write(f"unknown argument: {unknown[0]}\n{usage()}")
        sys.stdout.flush()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d: %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    for warning in ignored_flag_warnings(args):
        log.warning("%s", warning)
    server = ModelServer(flags)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if server.grpc_server is None:  # still loading: nothing in flight, leave now
            os._exit(0)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except ServingError as exc:
        print(f"Failed to start server. Error: {exc.code.name}: {exc.message}", flush=True)
        os._exit(255)
    except Exception as exc:  # noqa: BLE001 - same contract for unexpected failures
        log.exception("start failed")
        print(f"Failed to start server. Error: UNKNOWN: {type(exc).__name__}: {exc}", flush=True)
        os._exit(255)
    while not stop_requested.wait(1.0):
        pass
    log.info("Received signal, draining in-flight requests and shutting down")
    server.stop()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # TF's C++ threads can make interpreter teardown slow or hang; everything is closed already.
    os._exit(0)
