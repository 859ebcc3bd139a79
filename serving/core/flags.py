"""``tensorflow_model_server``'s command line: flag table, TF-style parsing, usage text (TF Serving compat spec §1.1/1.2).

TF's flag parser only accepts ``--name=value`` (bools also bare ``--name``); an argument it does
not recognise is left over and reported as ``unknown argument`` while the server keeps starting;
a recognised flag with an unparsable value (or ``--help``) is a usage error (exit 255).
"""

# ruff: noqa: E501  (the flag table keeps upstream help strings on one line each)
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["FLAGS", "IGNORED", "Flag", "FlagError", "ServerFlags", "ignored_flag_warnings", "parse_flags", "usage"]


def _ncpu() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # "int32" | "int64" | "string" | "bool" | "float"
    default: Any
    help: str


_N = _ncpu()

FLAGS: tuple[Flag, ...] = (
    Flag("port", "int32", 8500, "TCP port to listen on for gRPC/HTTP API. Disabled if port set to zero."),
    Flag("grpc_socket_path", "string", "", "If non-empty, listen to a UNIX socket for gRPC API on the given path."),
    Flag("rest_api_port", "int32", 0, "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported."),
    Flag("rest_api_num_threads", "int32", 4 * _N, "Number of threads for HTTP/REST API processing."),
    Flag("rest_api_timeout_in_ms", "int32", 30000, "Timeout for HTTP/REST API calls."),
    Flag("rest_api_enable_cors_support", "bool", False, "Enable CORS headers in response"),
    Flag("enable_batching", "bool", False, "enable batching"),
    Flag("allow_version_labels_for_unavailable_models", "bool", False, "If true, allows assigning unused version labels to models that are not available yet."),
    Flag("batching_parameters_file", "string", "", "If non-empty, read an ascii BatchingParameters protobuf from the supplied file name and use the contained values instead of the defaults."),
    Flag("enable_per_model_batching_parameters", "bool", False, "Enables model specific batching params like batch sizes, timeouts, batching feature flags to be read from `batching_params.pbtxt` file inside SavedModel dir."),
    Flag("model_config_file", "string", "", "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name, and serve the models in that file."),
    Flag("model_config_file_poll_wait_seconds", "int32", 0, "Interval in seconds between each poll of the filesystem for model_config_file. If unset or set to zero, poll will be done exactly once and not periodically."),
    Flag("model_name", "string", "default", "name of model (ignored if --model_config_file flag is set)"),
    Flag("model_base_path", "string", "", "path to export (ignored if --model_config_file flag is set, otherwise required)"),
    Flag("num_load_threads", "int32", 0, "The number of threads in the thread-pool used to load servables."),
    Flag("num_unload_threads", "int32", 0, "The number of threads in the thread-pool used to unload servables."),
    Flag("max_num_load_retries", "int32", 5, "maximum number of times it retries loading a model after the first failure, before giving up."),
    Flag("load_retry_interval_micros", "int64", 60_000_000, "The interval, in microseconds, between each servable load retry."),
    Flag("file_system_poll_wait_seconds", "int32", 1, "Interval in seconds between each poll of the filesystem for new model version. If set to zero poll will be exactly done once and not periodically. Setting this to negative value will disable polling entirely."),
    Flag("flush_filesystem_caches", "bool", True, "If true (the default), filesystem caches will be flushed after the initial load of all servables."),
    Flag("tensorflow_session_parallelism", "int64", 0, "Number of threads to use for running a Tensorflow session."),
    Flag("tensorflow_session_config_file", "string", "", "If non-empty, read an ascii TensorFlow Session ConfigProto protobuf from the supplied file name."),
    Flag("tensorflow_intra_op_parallelism", "int64", 0, "Number of threads to use to parallelize the execution of an individual op."),
    Flag("tensorflow_inter_op_parallelism", "int64", 0, "Controls the number of operators that can be executed simultaneously."),
    Flag("use_alts_credentials", "bool", False, "Use Google ALTS credentials"),
    Flag("ssl_config_file", "string", "", "If non-empty, read an ascii SSLConfig protobuf from the supplied file name and set up a secure gRPC channel"),
    Flag("platform_config_file", "string", "", "If non-empty, read an ascii PlatformConfigMap protobuf from the supplied file name."),
    Flag("per_process_gpu_memory_fraction", "float", 0.0, "Fraction that each process occupies of the GPU memory space."),
    Flag("saved_model_tags", "string", "serve", "Comma-separated set of tags corresponding to the meta graph def to load from SavedModel."),
    Flag("grpc_channel_arguments", "string", "", "A comma separated list of arguments to be passed to the grpc server. (e.g. grpc.max_connection_age_ms=2000)"),
    Flag("grpc_max_threads", "int32", 4 * _N, "Max grpc server threads to handle grpc messages."),
    Flag("enable_model_warmup", "bool", True, "Enables model warmup, which triggers lazy initializations (such as TF optimizations) at load time, to reduce first request latency."),
    Flag("num_request_iterations_for_warmup", "int32", 0, "Number of times a request is iterated during warmup replay. This value overrides the num_request_iterations field in the warmup requests if set."),
    Flag("version", "bool", False, "Display version"),
    Flag("monitoring_config_file", "string", "", "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name"),
    Flag("remove_unused_fields_from_bundle_metagraph", "bool", True, "Removes unused fields from MetaGraphDef proto message to save memory."),
    Flag("prefer_tflite_model", "bool", False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Prefer TensorFlow Lite model from `model.tflite` file in SavedModel directory."),
    Flag("num_tflite_pools", "int32", _N, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Number of TFLite interpreters pools."),
    Flag("num_tflite_interpreters_per_pool", "int32", 1, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Number of TFLite interpreters per pool."),
    Flag("enable_signature_method_name_check", "bool", False, "Enable method_name check for SignatureDef."),
    Flag("xla_cpu_compilation_enabled", "bool", False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable XLA:CPU JIT (default is disabled)."),
    Flag("xla_gpu_compilation_enabled", "bool", False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable XLA:GPU JIT."),
    Flag("enable_profiler", "bool", True, "Enable profiler service."),
    Flag("thread_pool_factory_config_file", "string", "", "If non-empty, read an ascii ThreadPoolConfig protobuf from the supplied file name."),
    Flag("mixed_precision", "string", "", "specify mixed_precision mode"),
    Flag("skip_initialize_tpu", "bool", False, "Whether to skip auto initializing TPU."),
    Flag("enable_grpc_healthcheck_service", "bool", False, "Enable the standard gRPC healthcheck service."),
    Flag("enable_serialization_as_tensor_content", "bool", False, "Enable serialization of predict response as tensor content."),
    # tfship addition: TF Serving binds every interface; `tfship serve` passes 127.0.0.1.
    Flag("rest_api_max_request_bytes", "int64", 512 * 1024 * 1024, "tfship: largest accepted REST request body in bytes (after gzip decompression)."),
    Flag("host", "string", "0.0.0.0", "tfship: interface to bind gRPC and REST on (TF Serving binds 0.0.0.0)."),
    Flag("enable_rollout_admin", "bool", True, "tfship: serve the rollout admin (gRPC tfship.serving.RolloutService, REST /tfship/v1/rollout) that sets canary weights and shadow rates; false answers UNIMPLEMENTED/404 like TF Serving."),
)

_BY_NAME = {f.name: f for f in FLAGS}

#: Flags accepted (so upstream command lines keep working) but with no effect here, and why.
#: The server warns once at start-up for each one given; README "Flags" lists them.
IGNORED: dict[str, str] = {
    "enable_per_model_batching_parameters": "per-model batching_params.pbtxt is not read; --batching_parameters_file applies to every model",
    "num_load_threads": "models load one at a time on the manager thread (upstream's default, 0)",
    "num_unload_threads": "models unload one at a time on the manager thread (upstream's default, 0)",
    "flush_filesystem_caches": "there are no filesystem caches to flush (Python reads model files once)",
    "platform_config_file": "only the tensorflow platform exists; use --model_config_file",
    "per_process_gpu_memory_fraction": "no GPU support: the server runs on CPU",
    "remove_unused_fields_from_bundle_metagraph": "the MetaGraphDef is kept whole",
    "prefer_tflite_model": "TensorFlow Lite models are not served",
    "num_tflite_pools": "TensorFlow Lite models are not served",
    "num_tflite_interpreters_per_pool": "TensorFlow Lite models are not served",
    "xla_cpu_compilation_enabled": "XLA JIT is left as TensorFlow configures it",
    "xla_gpu_compilation_enabled": "no GPU support",
    "thread_pool_factory_config_file": "custom thread pools are not supported",
    "mixed_precision": "models run in the precision they were saved in",
    "skip_initialize_tpu": "no TPU support",
    "tensorflow_session_config_file": "the session ConfigProto comes from the parallelism flags only",
}


#: Python type of each flag kind (what :class:`ServerFlags` declares).
KIND_TYPES: dict[str, type] = {"int32": int, "int64": int, "string": str, "bool": bool, "float": float}


@dataclass(frozen=True)
class ServerFlags:
    """Every flag's value, typed, one field per row of :data:`FLAGS` (same names, same order).

    The server reads ``flags.grpc_max_threads``, never ``values["grpc_max_threads"]``, so a
    misspelt flag name fails type checking. Defaults live in the table only: build one with
    :meth:`parse` or :meth:`from_values`. A flag added to the table needs its field here
    (``tests/serving/test_flags.py`` checks the two agree).
    """

    port: int
    grpc_socket_path: str
    rest_api_port: int
    rest_api_num_threads: int
    rest_api_timeout_in_ms: int
    rest_api_enable_cors_support: bool
    enable_batching: bool
    allow_version_labels_for_unavailable_models: bool
    batching_parameters_file: str
    enable_per_model_batching_parameters: bool
    model_config_file: str
    model_config_file_poll_wait_seconds: int
    model_name: str
    model_base_path: str
    num_load_threads: int
    num_unload_threads: int
    max_num_load_retries: int
    load_retry_interval_micros: int
    file_system_poll_wait_seconds: int
    flush_filesystem_caches: bool
    tensorflow_session_parallelism: int
    tensorflow_session_config_file: str
    tensorflow_intra_op_parallelism: int
    tensorflow_inter_op_parallelism: int
    use_alts_credentials: bool
    ssl_config_file: str
    platform_config_file: str
    per_process_gpu_memory_fraction: float
    saved_model_tags: str
    grpc_channel_arguments: str
    grpc_max_threads: int
    enable_model_warmup: bool
    num_request_iterations_for_warmup: int
    version: bool
    monitoring_config_file: str
    remove_unused_fields_from_bundle_metagraph: bool
    prefer_tflite_model: bool
    num_tflite_pools: int
    num_tflite_interpreters_per_pool: int
    enable_signature_method_name_check: bool
    xla_cpu_compilation_enabled: bool
    xla_gpu_compilation_enabled: bool
    enable_profiler: bool
    thread_pool_factory_config_file: str
    mixed_precision: str
    skip_initialize_tpu: bool
    enable_grpc_healthcheck_service: bool
    enable_serialization_as_tensor_content: bool
    rest_api_max_request_bytes: int
    host: str
    enable_rollout_admin: bool

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None) -> ServerFlags:
        """Flags from values by name; a flag not given takes the table's default."""
        values = values or {}
        unknown = sorted(set(values) - _BY_NAME.keys())
        if unknown:
            raise ValueError(f"not tensorflow_model_server flags: {unknown}; see --help for the list")
        return cls(**{f.name: values.get(f.name, f.default) for f in FLAGS})

    @classmethod
    def parse(cls, argv: list[str]) -> tuple[ServerFlags, list[str]]:
        """``(flags, unknown args)`` from a command line; see :func:`parse_flags`."""
        values, unknown = parse_flags(argv)
        return cls.from_values(values), unknown

    def values(self) -> dict[str, Any]:
        """Values by flag name (the table's order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FlagError(ValueError):
    """A recognised flag had a value that does not parse, or --help was given."""


def _parse_value(flag: Flag, text: str) -> Any:
    if flag.kind == "string":
        return text
    if flag.kind == "bool":
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise FlagError(f"Couldn't interpret value {text} for flag {flag.name}.")
    if flag.kind in ("int32", "int64"):
        try:
            value = int(text, 10)
        except ValueError:
            raise FlagError(f"Couldn't interpret value {text} for flag {flag.name}.") from None
        bits = 31 if flag.kind == "int32" else 63
        if not -(2**bits) <= value < 2**bits:
            raise FlagError(f"Couldn't interpret value {text} for flag {flag.name}.")
        return value
    try:
        return float(text)
    except ValueError:
        raise FlagError(f"Couldn't interpret value {text} for flag {flag.name}.") from None


def parse_flags(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse ``argv`` (without the program name) -> (values by flag name, unknown args).

    >>> values, unknown = parse_flags(["--port=9000", "--enable_batching", "stray"])
    >>> values["port"], values["enable_batching"], unknown
    (9000, True, ['stray'])
    """
    values = {f.name: f.default for f in FLAGS}
    unknown: list[str] = []
    for arg in argv:
        if arg in ("--help", "-help", "--helpfull"):
            raise FlagError("help requested")
        if not arg.startswith("--"):
            unknown.append(arg)
            continue
        name, eq, text = arg[2:].partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            unknown.append(arg)
            continue
        if not eq:
            if flag.kind == "bool":
                values[name] = True
            else:
                unknown.append(arg)  # TF: `--port 8500` leaves both words unconsumed
            continue
        values[name] = _parse_value(flag, text)
    return values, unknown


def ignored_flag_warnings(argv: list[str]) -> list[str]:
    """One warning per ignored flag (:data:`IGNORED`) given in ``argv``, in the order given."""
    warnings: list[str] = []
    for arg in argv:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if name in IGNORED and not any(w.startswith(f"--{name} ") for w in warnings):
            warnings.append(f"--{name} is accepted for compatibility but ignored by tfship-model-server: "
                            f"{IGNORED[name]}")
    return warnings


def usage(program: str = "tfship-model-server") -> str:
    """TF-style usage text: the invocation lines, then one line per flag with its default."""
    lines = [
        "usage: " + program,
        "Flags:",
    ]
    for f in FLAGS:
        default = f.default
        if f.kind == "bool":
            default = "true" if default else "false"
        elif f.kind == "string":
            default = f'"{default}"'
        lines.append(f"\t--{f.name}={default}\t{f.kind}\t{f.help}")
    return "\n".join(lines) + "\n"
