"""The server's flags: one table (names, kinds, defaults, help) and one typed view of it, ServerFlags."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from tfship.serving.core.flags import FLAGS, KIND_TYPES, FlagError, ServerFlags
from tfship.serving.core.server_core import CoreOptions

ROOT = Path(__file__).resolve().parents[2]


def test_every_flag_in_the_table_is_a_typed_field_in_the_same_order() -> None:
    hints = typing.get_type_hints(ServerFlags)
    assert [f.name for f in dataclasses.fields(ServerFlags)] == [f.name for f in FLAGS], (
        "serving/core/flags.py: give each flag in FLAGS a ServerFlags field of the same name, in the same order")
    for flag in FLAGS:
        assert hints[flag.name] is KIND_TYPES[flag.kind], flag.name
        assert isinstance(flag.default, KIND_TYPES[flag.kind]), flag.name


def test_defaults_come_from_the_table_and_the_command_line_overrides_them() -> None:
    flags, unknown = ServerFlags.parse(["--port=9000", "--enable_batching", "--saved_model_tags=serve,gpu", "x"])
    assert (flags.port, flags.enable_batching, flags.saved_model_tags, unknown) == (9000, True, "serve,gpu", ["x"])
    assert flags.rest_api_port == 0 and flags.model_name == "default"
    assert ServerFlags.from_values({"port": 9000}) == flags.__class__(**{**ServerFlags.from_values().values(),
                                                                          "port": 9000})
    with pytest.raises(dataclasses.FrozenInstanceError):
        flags.port = 1  # type: ignore[misc]
    with pytest.raises(FlagError):
        ServerFlags.parse(["--port=eighty"])


def test_a_misspelt_flag_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not tensorflow_model_server flags: \['grpc_max_thread'\]"):
        ServerFlags.from_values({"grpc_max_thread": 4})


def test_core_options_take_the_flags_fields() -> None:
    flags, _ = ServerFlags.parse(["--tensorflow_session_parallelism=3", "--tensorflow_inter_op_parallelism=2",
                                  "--saved_model_tags=serve,,tpu", "--max_num_load_retries=0",
                                  "--enable_model_warmup=false"])
    options = CoreOptions.from_flags(flags)
    assert (options.intra_op_threads, options.inter_op_threads) == (3, 2)
    assert options.saved_model_tags == ("serve", "tpu")
    assert options.max_num_load_retries == 0 and options.enable_model_warmup is False


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_mypy_catches_a_misspelt_flag(tmp_path: Path) -> None:
    # the flags module checked on its own (the layers import each other through the editable install,
    # which mypy does not follow): reading a flag that is not a field is an error
    (tmp_path / "flags.py").write_text((ROOT / "serving" / "core" / "flags.py").read_text())
    (tmp_path / "probe.py").write_text("from flags import ServerFlags\n\n"
                                       "threads: int = ServerFlags.from_values().grpc_max_threads\n"
                                       "typo: int = ServerFlags.from_values().grpc_max_thread\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "flags.py", "probe.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout
    assert done.stdout.count("error:") == 1 and '"ServerFlags" has no attribute "grpc_max_thread"' in done.stdout
