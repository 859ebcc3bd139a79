"""Prometheus metrics of the model server (TF Serving compat spec §8), on a private prometheus_client registry.

Metric names follow TF Serving's exporter: the TF monitoring name with every character outside
``[a-zA-Z0-9_]`` replaced by ``:`` (``/tensorflow/serving/request_count`` ->
``:tensorflow:serving:request_count``). Latencies are in microseconds, as upstream records them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.utils import floatToGoString

__all__ = ["ServerMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# 10 us .. ~50 s, roughly x2.5 per bucket (TF Serving uses exponential buckets too).
_LATENCY_BUCKETS = tuple(10 * 2.5**i for i in range(18))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# upstream's Buckets::Exponential(10, 1.8, 33) (~20 minutes) and (1, 2, 15)
_RUNTIME_BUCKETS = tuple(10 * 1.8**i for i in range(33))
_EXAMPLE_BUCKETS = tuple(float(2**i) for i in range(15))


class ServerMetrics:
    """Request counts/latencies by model, version, API and entrypoint; TF runtime latencies;
    examples per Classify/Regress/MultiInference request; warmup latencies; batch sizes; load
    states.

    >>> m = ServerMetrics()
    >>> m.observe_request("half", 123, "predict", "GRPC", "OK", 0.002)
    >>> b"# TYPE :tensorflow:serving:request_count" in m.exposition()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._count = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ["model_name", "version", "API", "entrypoint", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for serving requests.",
            ["model_name", "version", "API", "entrypoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Distribution of the sizes of the batches the model executed.",
            ["model_name"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._state = Gauge(
            ":tensorflow:serving:model_version_state",
            "Load state of each model version (ModelVersionStatus.State number: 30 = AVAILABLE).",
            ["model_name", "version"],
            registry=self.registry,
        )
        self._inflight = Gauge(
            ":tfship:serving:requests_in_flight",
            "Requests currently being processed (they are drained before shutdown or unload).",
            ["entrypoint"],
            registry=self.registry,
        )
        self._runtime = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            buckets=_RUNTIME_BUCKETS,
            registry=self.registry,
        )
        self._examples = Histogram(
            ":tensorflow:serving:request_example_counts",
            "The number of tensorflow.Examples per request.",
            ["model"],
            buckets=_EXAMPLE_BUCKETS,
            registry=self.registry,
        )
        # prometheus_client files a counter named ..._total under the name without the suffix;
        # the exposition puts it back (upstream's name)
        self._exposed_names = {":tensorflow:serving:request_example_count":
                               ":tensorflow:serving:request_example_count_total"}
        self._examples_total = Counter(
            ":tensorflow:serving:request_example_count_total",
            "The total number of tensorflow.Examples.",
            ["model"],
            registry=self.registry,
        )
        self._warmup = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ["model_path", "status"],
            buckets=_RUNTIME_BUCKETS,
            registry=self.registry,
        )
        self._capture_written = Counter(
            ":tfship:serving:capture_records_written",
            "PredictionLog records written to capture files (logging_config).",
            ["model_name"],
            registry=self.registry,
        )
        self._capture_dropped = Counter(
            ":tfship:serving:capture_records_dropped",
            "Sampled calls not captured: queue_full, budget (max_total_bytes) or error.",
            ["model_name", "reason"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        self._warmup_statuses: dict[str, set[str]] = {}
        # rollout (tfship only): shadow pairs of a candidate version against the stable answers
        self._shadow_pairs = Counter(
            ":tfship:serving:shadow_pairs", "Shadow runs of a candidate compared with the stable answer.",
            ["model_name", "version", "agree"], registry=self.registry)
        self._shadow_dropped = Counter(
            ":tfship:serving:shadow_dropped", "Shadow runs dropped because the server was saturated.",
            ["model_name", "version"], registry=self.registry)
        self._shadow_errors = Counter(
            ":tfship:serving:shadow_candidate_errors", "Shadow runs the candidate version failed.",
            ["model_name", "version"], registry=self.registry)
        self._shadow_worst = Gauge(
            ":tfship:serving:shadow_worst_abs_error",
            "Largest absolute difference between a candidate's and the stable answer so far.",
            ["model_name", "version"], registry=self.registry)
        self._shadow_latency = Histogram(
            ":tfship:serving:shadow_candidate_latency",
            "Distribution of wall time (in microseconds) of the candidate's shadow runs.",
            ["model_name", "version"], buckets=_LATENCY_BUCKETS, registry=self.registry)

    def in_flight(self, entrypoint: str) -> Gauge:
        """Gauge child counting requests being processed (``with metrics.in_flight("REST").track_inprogress()``)."""
        return self._inflight.labels(entrypoint)

    def observe_request(
        self, model: str, version: int | None, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        key = (model, version, api, entrypoint, status)
        children = self._request_children.get(key)
        if children is None:
            # labels() validates and locks on every call; the children never change, so look
            # them up once per label set
            v = "" if version is None else str(version)
            children = (self._count.labels(model, v, api, entrypoint, status).inc,
                        self._latency.labels(model, v, api, entrypoint).observe)
            self._request_children[key] = children
        inc, observe = children
        inc()
        observe(seconds * 1e6)

    def batch_hook(self, model: str):  # type: ignore[no-untyped-def]
        """A ``LoadOptions.on_batch`` callback recording batch sizes of ``model``."""
        child = self._batch.labels(model)
        return child.observe

    def runtime_hook(self, model: str) -> Callable[[str, float], None]:
        """A ``LoadOptions.on_run`` callback: ``(API, seconds)`` of each TF run of ``model``
        (runtime "TF1": the session runtime, as upstream labels it)."""
        children: dict[str, Callable[[float], None]] = {}

        def observe(api: str, seconds: float) -> None:
            child = children.get(api)
            if child is None:
                child = children[api] = self._runtime.labels(model, api, "TF1").observe
            child(seconds * 1e6)

        return observe

    def examples_hook(self, model: str) -> Callable[[int], None]:
        """A ``LoadOptions.on_examples`` callback: examples in each Classify/Regress/MultiInference."""
        histogram, total = self._examples.labels(model), self._examples_total.labels(model)

        def observe(count: int) -> None:
            histogram.observe(count)
            total.inc(count)

        return observe

    def capture_hooks(self, model: str) -> tuple[Callable[[int], None], Callable[[str], None]]:
        """``(on_written, on_dropped)`` callbacks of a CaptureSink capturing ``model``."""
        written = self._capture_written.labels(model)
        dropped = self._capture_dropped

        def on_written(size: int) -> None:
            written.inc()

        def on_dropped(reason: str) -> None:
            dropped.labels(model, reason).inc()

        return on_written, on_dropped

    def observe_warmup(self, model_path: str, status: str, seconds: float) -> None:
        """One warmup replay of the version at ``model_path``: ``status`` "OK" or the error."""
        self._warmup.labels(model_path, status).observe(seconds * 1e6)
        self._warmup_statuses.setdefault(model_path, set()).add(status)

    def forget_version(self, model: str, version: int, model_path: str) -> None:
        """Drop the series of a version that was unloaded (request counts and latencies, load
        state, warmup): one series set per version ever loaded would grow for as long as the
        server runs. Prometheus treats the vanished series as ended; totals live on in
        ``rate()``/``increase()`` over the scraped history."""
        v = str(version)
        # list(): a request thread may add a key meanwhile (dict copies are atomic under the GIL)
        keys = [k for k in list(self._request_children) if k[0] == model and k[1] == version]
        for key in keys:
            self._request_children.pop(key, None)
        for _, _, api, entrypoint, status in keys:
            with contextlib.suppress(KeyError):
                self._count.remove(model, v, api, entrypoint, status)
            with contextlib.suppress(KeyError):
                self._latency.remove(model, v, api, entrypoint)
        with contextlib.suppress(KeyError):
            self._state.remove(model, v)
        for status in self._warmup_statuses.pop(model_path, set()):
            with contextlib.suppress(KeyError):
                self._warmup.remove(model_path, status)

    def int64_value(self, tf_name: str) -> int:
        """The value of metric ``tf_name`` (TF's name, e.g. ``/tensorflow/serving/request_count``)
        as ReloadConfigRequest.metric_names reads it: its first point (first label set), 0 if
        the metric has none or does not exist. Histograms count their observations."""
        exposed = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
        if exposed in self._exposed_names:  # prometheus_client's name for it, not a TF name
            return 0
        name = next((family for family, shown in self._exposed_names.items() if shown == exposed), exposed)
        for family in self.registry.collect():
            if family.name != name:
                continue
            wanted = {"counter": name + "_total", "histogram": name + "_count"}.get(family.type, name)
            for sample in family.samples:
                if sample.name == wanted:
                    return int(sample.value)
        return 0

    def observe_shadow(self, model: str, version: int, agree: bool, worst_abs: float, seconds: float,
                       error: bool) -> None:
        """One shadow run of candidate ``version`` (a rollout's ShadowRunner.on_result)."""
        v = str(version)
        if error:
            self._shadow_errors.labels(model, v).inc()
            return
        self._shadow_pairs.labels(model, v, "true" if agree else "false").inc()
        self._shadow_latency.labels(model, v).observe(seconds * 1e6)
        gauge = self._shadow_worst.labels(model, v)
        if worst_abs > gauge._value.get():  # noqa: SLF001 - prometheus_client has no max-gauge
            gauge.set(worst_abs)

    def count_shadow_dropped(self, model: str, version: int) -> None:
        self._shadow_dropped.labels(model, str(version)).inc()

    def requests_in_flight(self) -> int:
        """Requests being processed on every entrypoint (the shadow runner's saturation signal)."""
        children: dict[Any, Any] = self._inflight._metrics  # noqa: SLF001 - no public read of a gauge
        return int(sum(child._value.get() for child in list(children.values())))  # noqa: SLF001

    def set_state(self, model: str, version: int, state: int) -> None:
        self._state.labels(model, str(version)).set(int(state))

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric, named as TF Serving's exporter does.

        prometheus_client would call a counter ``<name>_total`` and add a ``<name>_created``
        series per label set; TF Serving's page has neither (``:tensorflow:serving:request_count
        {...} 3``), and dashboards written against it query those names.
        """
        lines: list[str] = []
        for family in self.registry.collect():
            exposed = self._exposed_names.get(family.name, family.name)
            lines.append(f"# HELP {exposed} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {exposed} {family.type}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = exposed if family.type == "counter" else sample.name
                labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
                lines.append(f"{name}{{{labels}}} {floatToGoString(sample.value)}" if labels
                             else f"{name} {floatToGoString(sample.value)}")
        return ("\n".join(lines) + "\n").encode("utf-8")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
