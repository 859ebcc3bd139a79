"""The Prometheus page's names and values (TF Serving compat spec §8) and the int64 reading behind
ReloadConfig's metric_names."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from tfship.serving.metrics import ServerMetrics


def _metrics() -> ServerMetrics:
    m = ServerMetrics()
    m.observe_request("half", 123, "predict", "GRPC", "OK", 0.002)
    m.observe_request("half", 123, "predict", "REST", "OK", 0.003)
    m.observe_request("half", 123, "predict", "REST", "INVALID_ARGUMENT", 0.001)
    m.runtime_hook("half")("Predict", 0.0005)
    m.examples_hook("half")(3)
    m.observe_warmup("/models/half/123", "OK", 0.25)
    return m


def test_page_uses_tf_serving_names_and_parses_as_prometheus_text() -> None:
    page = _metrics().exposition().decode()
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert ':tensorflow:serving:request_count{model_name="half",version="123",API="predict",entrypoint="GRPC",' \
           'status="OK"} 1.0' in page
    assert "# TYPE :tensorflow:serving:request_example_count_total counter" in page
    assert ':tensorflow:serving:request_example_count_total{model="half"} 3.0' in page
    assert ':tensorflow:serving:runtime_latency_count{model_name="half",API="Predict",runtime="TF1"} 1.0' in page
    assert ':tensorflow:serving:model_warmup_latency_count{model_path="/models/half/123",status="OK"} 1.0' in page
    assert "_created" not in page and "request_count_total" not in page  # prometheus_client's own additions
    names = {f.name for f in text_string_to_metric_families(page)}
    assert {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency",
            ":tensorflow:serving:runtime_latency", ":tensorflow:serving:request_example_counts",
            ":tensorflow:serving:model_warmup_latency"} <= names


def test_label_values_are_escaped() -> None:
    m = ServerMetrics()
    m.observe_request('we"ird\\name', None, "predict", "REST", "OK", 0.001)
    page = m.exposition().decode()
    assert 'model_name="we\\"ird\\\\name",version=""' in page
    assert any(f.name == ":tensorflow:serving:request_count" for f in text_string_to_metric_families(page))


def test_int64_value_reads_the_first_point_by_tf_name() -> None:
    m = _metrics()
    assert m.int64_value("/tensorflow/serving/request_count") == 1  # first label set only, as upstream
    assert m.int64_value("/tensorflow/serving/request_example_count_total") == 3
    assert m.int64_value("/tensorflow/serving/model_warmup_latency") == 1  # histograms: observations
    assert m.int64_value("/tensorflow/serving/no_such_metric") == 0
    # only the names on the page count: not prometheus_client's own spellings
    assert m.int64_value("/tensorflow/serving/request_count_total") == 0
    assert m.int64_value("/tensorflow/serving/request_example_count") == 0


def test_an_unloaded_versions_series_are_dropped() -> None:
    """A server that swaps every hour for months must not keep a series set per version."""
    m = ServerMetrics()
    for version in (1, 2):
        m.observe_request("half", version, "predict", "GRPC", "OK", 0.002)
        m.observe_request("half", version, "predict", "REST", "INVALID_ARGUMENT", 0.001)
        m.set_state("half", version, 30)
        m.observe_warmup(f"/models/half/{version}", "OK", 0.01)
    m.forget_version("half", 1, "/models/half/1")
    page = m.exposition().decode()
    assert 'version="1"' not in page and "/models/half/1" not in page
    assert page.count('version="2"') > 3 and "/models/half/2" in page
    m.observe_request("half", 1, "predict", "GRPC", "OK", 0.002)  # a late request still counts
    assert 'version="1",API="predict",entrypoint="GRPC",status="OK"} 1.0' in m.exposition().decode()
