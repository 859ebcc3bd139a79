"""Every flag of ``tensorflow_model_server``: name, type, default and help line, as the spec's table
(../shared/spec/tf-serving-compat.md 1.2) and upstream's main.cc/server.h list them; every flag
tfship accepts but ignores is documented and warned about once at start-up."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tfship.deploy.launch import start_model_server
from tfship.serving.core.flags import FLAGS, IGNORED, _ncpu, ignored_flag_warnings, usage

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("TFSHIP_SHARED_DIR") or REPO_ROOT.parent / "shared")

#: upstream main.cc's flag_list, in order (TF Serving 2.x).
UPSTREAM_ORDER = [
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
    "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads",
    "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros", "file_system_poll_wait_seconds",
    "flush_filesystem_caches", "tensorflow_session_parallelism", "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "use_alts_credentials",
    "ssl_config_file", "platform_config_file", "per_process_gpu_memory_fraction", "saved_model_tags",
    "grpc_channel_arguments", "grpc_max_threads", "enable_model_warmup", "num_request_iterations_for_warmup",
    "version", "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model",
    "num_tflite_pools", "num_tflite_interpreters_per_pool", "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled", "xla_gpu_compilation_enabled", "enable_profiler",
    "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu",
    "enable_grpc_healthcheck_service", "enable_serialization_as_tensor_content",
]
#: tfship's own flags, after upstream's.
TFSHIP_ONLY = ["rest_api_max_request_bytes", "host", "enable_rollout_admin"]
#: server.h's C++ types (tensorflow::int32 / int64_t / float / bool / string).
UPSTREAM_INT64 = {"load_retry_interval_micros", "tensorflow_session_parallelism",
                  "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"}
_SPEC_TYPES = {"int": "int32", "int64": "int64", "str": "string", "bool": "bool", "float": "float"}


def _spec_rows() -> dict[str, tuple[str | None, object]]:
    """name -> (type or None, default) from the spec's 1.2 table."""
    text = (SHARED_DIR / "spec" / "tf-serving-compat.md").read_text()
    table = text.split("### 1.2 Flags", 1)[1].split("###", 1)[0]
    rows: dict[str, tuple[str | None, object]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-z0-9_]+)`", cells[0])
        kind = _SPEC_TYPES.get(cells[1]) if cells[1] else None
        defaults = [d.strip() for d in cells[2].split(" / ")] if len(names) > 1 else [cells[2]] * len(names)
        if len(defaults) != len(names):
            defaults = [cells[2]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            rows[name] = (kind, _spec_default(default))
    return rows


def _spec_default(text: str) -> object:
    text = text.strip("*` ")
    if text in ("true", "false"):
        return text == "true"
    if text == '""':
        return ""
    if text == "NCPU":
        return _ncpu()
    if text == "4×NCPU":
        return 4 * _ncpu()
    if text == "off":
        return "off"
    try:
        return int(text)
    except ValueError:
        return text


@pytest.mark.tf_serving_shared
def test_every_flag_of_the_spec_table_has_its_name_type_and_default() -> None:
    ours = {f.name: f for f in FLAGS}
    rows = _spec_rows()
    assert len(rows) >= 45
    assert sorted(set(rows) - set(ours)) == []
    for name, (kind, default) in rows.items():
        flag = ours[name]
        if kind is not None:
            want = "int64" if kind == "int32" and name in UPSTREAM_INT64 else kind
            assert flag.kind == want, (name, flag.kind, want)
        if default == "off":  # "accept; may be no-ops": off, i.e. false or empty
            assert flag.default in (False, ""), name
        elif name == "per_process_gpu_memory_fraction":
            assert flag.default == 0.0
        else:
            assert flag.default == default, (name, flag.default, default)


def test_the_flags_are_upstreams_in_upstreams_order_then_tfships_own() -> None:
    assert [f.name for f in FLAGS] == UPSTREAM_ORDER + TFSHIP_ONLY
    for f in FLAGS:
        if f.name in UPSTREAM_INT64 or f.name == "rest_api_max_request_bytes":
            assert f.kind == "int64", f.name
        elif f.name == "per_process_gpu_memory_fraction":
            assert f.kind == "float"
        else:
            assert f.kind in ("int32", "string", "bool"), f.name


def test_help_has_one_tf_style_line_per_flag_with_its_default_and_type() -> None:
    lines = [line for line in usage().splitlines() if line.startswith("\t--")]
    assert len(lines) == len(FLAGS)
    for line, flag in zip(lines, FLAGS, strict=True):
        head, kind, text = line[1:].split("\t")
        default = ("true" if flag.default else "false") if flag.kind == "bool" else (
            f'"{flag.default}"' if flag.kind == "string" else str(flag.default))
        assert (head, kind, text) == (f"--{flag.name}={default}", flag.kind, flag.help)
        assert text, flag.name


def test_every_ignored_flag_is_a_real_flag_documented_in_the_readme() -> None:
    names = {f.name for f in FLAGS}
    readme = (REPO_ROOT / "README.md").read_text()
    for name, why in IGNORED.items():
        assert name in names and why
        assert f"`--{name}`" in readme, f"README does not list the ignored flag --{name}"


def test_an_ignored_flag_warns_once() -> None:
    warnings = ignored_flag_warnings(["--port=1", "--num_load_threads=4", "--num_load_threads=8", "--mixed_precision"])
    said = "is accepted for compatibility but ignored by tfship-model-server"
    assert warnings == [f"--num_load_threads {said}: {IGNORED['num_load_threads']}",
                        f"--mixed_precision {said}: {IGNORED['mixed_precision']}"]


@pytest.mark.slow
def test_the_server_warns_once_at_start_up_for_each_ignored_flag_given(tf_serving_testdata: Path) -> None:
    base = tf_serving_testdata / "saved_model_half_plus_two_cpu"
    with start_model_server(base, "half", extra_args=["--num_load_threads=2", "--prefer_tflite_model",
                                                      "--num_load_threads=3"], rest=False) as server:
        log = Path(server.log_path).read_text(errors="replace")
    assert log.count("--num_load_threads is accepted for compatibility but ignored") == 1
    assert log.count("--prefer_tflite_model is accepted for compatibility but ignored") == 1
    assert "--mixed_precision" not in log
