"""Client capture and replay against a real tfship-model-server.

``cand/1``: ``y = 2x``, ``probs = softmax(x @ W)``; ``cand/2`` equals it except where ``x[0] > 0.5``
(``y = 2x + 1`` there): the known subset a replay of v1's traffic against v2 must name exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from client_test_models import needs_tf
from tfship.cli import main
from tfship.client import ClientConfig, connect
from tfship.client.replay import replay_capture

from tfship.capture import CaptureConfig, read_capture
from tfship.capture.files import model_capture_files

pytestmark = needs_tf
ROWS = np.random.default_rng(5).uniform(0, 1, size=(20, 2)).astype(np.float32)
CHANGED = {i for i, row in enumerate(ROWS) if row[0] > 0.5}


def _build(path: Path, version: int) -> None:
    import tensorflow as tf

    w = tf.constant([[1.0, -1.0, 0.5], [0.25, 2.0, -1.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        y = 2.0 * x
        if version == 2:
            y = tf.where(x[:, :1] > 0.5, y + 1.0, y)
        return {"y": y, "probs": tf.nn.softmax(tf.matmul(x, w))}

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


@pytest.fixture(scope="module")
def cand_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cand")
    for version in (1, 2):
        _build(base / "cand" / str(version), version)
    return base


@pytest.fixture(scope="module")
def cand_server(cand_base: Path) -> Iterator[Any]:
    from tfship.deploy.launch import start_model_server

    base = cand_base
    config = base / "models.config"
    config.write_text(f"""model_config_list {{ config {{ name: "cand" base_path: "{base / 'cand'}"
      model_platform: "tensorflow" model_version_policy {{ all {{ }} }} }} }}""")
    with start_model_server(model_config_file=str(config), wait_for=[("cand", 1), ("cand", 2)],
                            timeout=180) as server:
        yield server


@pytest.fixture(scope="module")
def v1_capture(cand_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 one-row predicts to cand v1, captured by the client."""
    prefix = tmp_path_factory.mktemp("capture")
    config = ClientConfig(capture=CaptureConfig(f"{prefix}/"))
    with connect(cand_server.grpc_url, config) as client:
        for row in ROWS:
            client.predict("cand", {"x": row[None]}, version=1)
    return prefix


def test_client_capture_records_every_call_with_the_version_that_answered(v1_capture: Path) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    calls = list(read_capture([v1_capture]))
    assert len(calls) == len(ROWS)
    for call, row in zip(calls, ROWS, strict=True):
        assert (call.kind, call.model, call.version, call.signature) == ("predict", "cand", 1, "serving_default")
        np.testing.assert_array_equal(call.inputs["x"], row[None])
        np.testing.assert_allclose(call.outputs["y"], 2 * row[None])  # type: ignore[index]
        official = prediction_log_pb2.PredictionLog.FromString(call.log.SerializeToString())
        assert official.log_metadata.model_spec.version.value == 1


def test_asyncio_client_captures_too(cand_server: Any, tmp_path: Path) -> None:
    from tfship.client import aio

    async def run() -> None:
        config = ClientConfig(capture=CaptureConfig(f"{tmp_path}/", requests_only=True))
        async with aio.connect(cand_server.grpc_url, config) as client:
            await asyncio.gather(*(client.predict("cand", {"x": ROWS[i:i + 1]}) for i in range(5)))
            assert client.capture is not None and client.capture.flush()

    asyncio.run(run())
    calls = list(read_capture([tmp_path]))
    assert len(calls) == 5 and all(c.version == 2 and c.outputs is None for c in calls)


def test_client_sampling_and_budget_bound_what_is_kept(cand_server: Any, tmp_path: Path) -> None:
    config = ClientConfig(capture=CaptureConfig(f"{tmp_path}/", max_total_bytes=1024, max_file_bytes=1024))
    with connect(cand_server.grpc_url, config) as client:
        for row in ROWS:
            client.predict("cand", {"x": row[None]})
        sink = client.capture.sink("cand")  # type: ignore[union-attr]
        assert sink.flush()
        assert sink.stats.dropped["budget"] > 0 and sink.stats.written + sink.stats.dropped_total == len(ROWS)
    assert sum(f.path.stat().st_size for f in model_capture_files(f"{tmp_path}/", "cand")) <= 1024


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_replay_against_the_same_version_agrees_fully(cand_server: Any, v1_capture: Path, transport: str) -> None:
    url = cand_server.grpc_url if transport == "grpc" else cand_server.rest_url
    with connect(url) as client:
        report = replay_capture(client, "cand", [v1_capture], version=1)
    assert report.ok and report.agreement == 1.0 and len(report.records) == len(ROWS)
    probs = next(o for o in report.outputs() if o.name == "probs")
    assert probs.top1_rows == len(ROWS) and probs.top1_agreed == len(ROWS)
    assert report.latency()["p50"] > 0


def test_replay_against_a_changed_version_names_exactly_the_changed_records(
        cand_server: Any, v1_capture: Path) -> None:
    with connect(cand_server.grpc_url) as client:
        report = replay_capture(client, "cand", [v1_capture], version=2, min_agreement=0.9)
    worst = report.worst(len(ROWS))
    assert {r.index for r in worst} == CHANGED and 0 < len(CHANGED) < len(ROWS)
    assert all("y:" in r.detail for r in worst)
    by_name = {o.name: o for o in report.outputs()}
    assert by_name["y"].agreed == len(ROWS) - len(CHANGED) and by_name["probs"].agreed == len(ROWS)
    assert report.agreement == pytest.approx(1 - len(CHANGED) / len(ROWS))
    assert not report.ok


def test_cli_exit_codes_and_report(cand_server: Any, v1_capture: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    report = tmp_path / "report.json"
    ok = runner.invoke(main, ["replay", str(v1_capture), "--url", cand_server.grpc_url, "--model", "cand",
                              "--version", "1", "--report", str(report), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert "PASS cand v1" in ok.output and report.exists()
    changed = runner.invoke(main, ["replay", str(v1_capture), "--url", cand_server.grpc_url, "--model", "cand",
                                   "--version", "2", "--no-progress"])
    assert changed.exit_code == 1 and "worst records" in changed.output
    from tfship.deploy.launch import free_port

    down = runner.invoke(main, ["replay", str(v1_capture), "--url", f"grpc://127.0.0.1:{free_port()}",
                                "--model", "cand", "--no-progress", "--timeout", "5"])
    assert down.exit_code == 3 and "error:" in down.output


def test_cli_replays_against_an_export_dir_served_for_the_replay(cand_base: Path, v1_capture: Path) -> None:
    result = CliRunner().invoke(main, ["replay", str(v1_capture), "--export", str(cand_base / "cand" / "2"),
                                       "--model", "cand", "--no-progress", "--worst", "3"])
    assert result.exit_code == 1, result.output
    assert "FAIL cand v2 via grpc://127.0.0.1:" in result.output
    assert f"agreement {100 * (1 - len(CHANGED) / len(ROWS)):.2f}%" in result.output


def test_a_corrupt_file_is_reported_with_its_offset_and_the_others_still_replay(
        cand_server: Any, v1_capture: Path, tmp_path: Path) -> None:
    import shutil

    from tfship.capture.tfrecord import RecordFile

    copy = tmp_path / "cap"
    shutil.copytree(v1_capture, copy)
    (good,) = [f.path for f in model_capture_files(f"{copy}/", "cand")]
    bad = good.with_name(good.name.replace(".000001.", ".000002."))
    shutil.copy(good, bad)
    records = list(RecordFile(bad))
    data = bytearray(bad.read_bytes())
    data[records[3].offset + 14] ^= 0xFF  # inside record 3's payload: its data CRC fails
    bad.write_bytes(bytes(data))
    with connect(cand_server.grpc_url) as client:
        report = replay_capture(client, "cand", [copy], version=1)
    assert len(report.records) == len(ROWS) + 3  # all of the good file, the bad one up to record 3
    (error,) = report.read_errors
    assert bad.name in error and f"offset {records[3].offset}" in error
    assert report.agreement == 1.0


class CountingClient:
    """A real client that counts the predicts it sends (to see what a resumed replay re-sends)."""

    def __init__(self, client: Any) -> None:
        self._client, self.predicts = client, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def predict_detailed(self, *args: Any, **kwargs: Any) -> Any:
        self.predicts += 1
        return self._client.predict_detailed(*args, **kwargs)


def test_a_resumed_replay_sends_only_what_was_not_committed(
        cand_server: Any, v1_capture: Path, tmp_path: Path) -> None:
    from tfship.errors import ConfigError

    state = tmp_path / "state"
    with connect(cand_server.grpc_url) as real:
        client = CountingClient(real)
        first = replay_capture(client, "cand", [v1_capture], version=1, state_dir=state)
        assert client.predicts == len(ROWS)
        with pytest.raises(ConfigError, match="unfinished replay: pass --resume"):
            replay_capture(client, "cand", [v1_capture], version=1, state_dir=state)
        again = replay_capture(client, "cand", [v1_capture], version=1, state_dir=state, resume=True)
        assert client.predicts == len(ROWS)  # every chunk was committed: nothing re-sent
        assert [r.position for r in again.records] == [r.position for r in first.records]
        assert again.agreement == first.agreement == 1.0
