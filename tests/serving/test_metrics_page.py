"""The Prometheus page of a live server after real traffic: every metric the README lists, with its labels.

One server with batching and monitoring on: a Keras model exported by tfship (its warmup records
are replayed at load) and TF Serving's half_plus_two (Classify/Regress take tf.Examples). Predicts
over gRPC and REST, a classify and a regress, then the page must hold every name of the README's
list with the label names and values that traffic produced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tfship.client import connect
from tfship.export import export_model

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PATH = "/monitoring/prometheus/metrics"

#: name -> label names, for every metric the README's "Model server" section names.
EXPECTED_LABELS = {
    ":tensorflow:serving:request_count": {"model_name", "version", "API", "entrypoint", "status"},
    ":tensorflow:serving:request_latency": {"model_name", "version", "API", "entrypoint"},
    ":tensorflow:serving:runtime_latency": {"model_name", "API", "runtime"},
    ":tensorflow:serving:request_example_counts": {"model"},
    ":tensorflow:serving:request_example_count_total": {"model"},
    ":tensorflow:serving:model_warmup_latency": {"model_path", "status"},
    ":tensorflow:serving:batching_session:processed_batch_size": {"model_name"},
    ":tensorflow:serving:model_version_state": {"model_name", "version"},
    ":tfship:serving:requests_in_flight": {"entrypoint"},
}


def _readme_metric_names() -> set[str]:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("the REST port serves Prometheus metrics")
    paragraph = text[start:text.index("\n\n", start)]
    short = re.findall(r"`(:?[a-z_:]+)`", paragraph)
    return {n if n.startswith(":") else f":tensorflow:serving:{n}" for n in short if "/" not in n}


def test_the_readme_lists_exactly_the_metrics_checked_here() -> None:
    assert _readme_metric_names() == set(EXPECTED_LABELS)


def test_every_listed_metric_is_on_a_live_page_with_its_labels_after_real_traffic(
        start_model_server: Callable[..., Any], tf_serving_testdata: Path, tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(4,), name="x")
    export_model(keras.Model(inputs, keras.layers.Dense(1, name="y")(inputs)), tmp_path / "models", "dense")
    (tmp_path / "monitoring.txt").write_text(f'prometheus_config {{ enable: true path: "{PATH}" }}\n')
    (tmp_path / "batching.txt").write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
                                           "num_batch_threads { value: 2 }\n")
    half = tf_serving_testdata / "saved_model_half_plus_two_cpu"
    (tmp_path / "models.config").write_text(f"""model_config_list {{
  config {{ name: "dense" base_path: "{tmp_path / 'models' / 'dense'}" model_platform: "tensorflow" }}
  config {{ name: "half" base_path: "{half}" model_platform: "tensorflow" }}
}}""")
    server = start_model_server(f"--model_config_file={tmp_path / 'models.config'}", "--enable_batching",
                                f"--batching_parameters_file={tmp_path / 'batching.txt'}",
                                f"--monitoring_config_file={tmp_path / 'monitoring.txt'}", models=("dense", "half"))
    x = np.ones((3, 4), np.float32)
    for url in (f"grpc://{server.grpc_address}", server.rest_url):
        with connect(url) as client:
            for _ in range(3):
                client.predict("dense", x)
            client.classify("half", [{"x": 1.0}, {"x": 2.0}], signature="classify_x_to_y")
            client.regress("half", [{"x": 1.0}], signature="regress_x_to_y")
    page = httpx.get(server.rest_url + PATH, timeout=30).text
    assert ':tensorflow:serving:request_count{model_name="dense",version="1",API="predict",entrypoint="GRPC",' \
           'status="OK"} 3' in page  # TF Serving's spelling: no _total, no _created
    families = {f.name: f for f in text_string_to_metric_families(page)}
    # prometheus_client's parser strips _total from counter names; TF Serving's page has none.
    families.update({f"{name}_total": f for name, f in list(families.items()) if f.type == "counter"})
    for name, labels in EXPECTED_LABELS.items():
        assert name in families, f"{name} is not on the page"
        samples = families[name].samples
        assert samples, name
        assert all(set(s.labels) - {"le"} == labels for s in samples), (name, samples[:3])

    def value(name: str, suffix: str = "", **labels: str) -> float:
        return sum(s.value for s in families[name].samples if s.name in (name + suffix, name + suffix + "_total")
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    assert value(":tensorflow:serving:request_count", model_name="dense", version="1", API="predict",
                 entrypoint="GRPC", status="OK") == 3
    assert value(":tensorflow:serving:request_count", model_name="dense", API="predict", entrypoint="REST",
                 status="OK") == 3
    assert value(":tensorflow:serving:request_latency", "_count", model_name="half", API="classify") == 2
    assert value(":tensorflow:serving:runtime_latency", "_count", model_name="dense") >= 6
    assert value(":tensorflow:serving:request_example_count_total", model="half") == 6  # 2+1 examples, twice
    assert value(":tensorflow:serving:request_example_counts", "_count", model="half") == 4
    assert value(":tensorflow:serving:model_warmup_latency", "_count", status="OK") >= 1
    # Batching: 6 predicts of 3 rows went through the batcher; every batch size is observed.
    assert value(":tensorflow:serving:batching_session:processed_batch_size", "_count", model_name="dense") >= 1
    assert value(":tensorflow:serving:batching_session:processed_batch_size", "_sum", model_name="dense") >= 18
    assert value(":tensorflow:serving:model_version_state", model_name="dense", version="1") == 30  # AVAILABLE
    assert value(":tensorflow:serving:model_version_state", model_name="half", version="123") == 30
    assert ":tfship:serving:requests_in_flight" in families
