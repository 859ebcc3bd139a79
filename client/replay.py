"""Replay captured traffic against a target and measure how far its answers agree.

>>> report = replay_capture(client, "digits", ["capture/"])   # doctest: +SKIP
>>> print(report.text())                                       # doctest: +SKIP
PASS digits via grpc://127.0.0.1:8500: 1200 records replayed, 1200 compared, agreement 100.00% ...

Each captured call (a PredictionLog from the server's or the client's capture) is sent again --
same API, inputs, signature -- to ``model`` on the client's target (``version``/``label`` pin it)
and the answer is compared with the captured one, output by output, with the model's tolerances
(:mod:`tfship.tolerance`: per dtype, exact for ints, bools and strings). Classifier-shaped outputs
(float ``[batch, n]`` with n > 1, and Classify scores) also count top-1 agreement (same argmax per
row) and top-k agreement (the captured top-1 is among the answer's top k). Request-only records
are replayed (latency) but not compared.

Calls run ``concurrency`` at a time, with a tqdm progress bar; with ``state_dir`` each finished
chunk of records is committed (temp file, fsync, rename) so an interrupted replay resumes where it
stopped (``resume=True``), as ``tfship predict --resume``. A corrupt capture file's error (file
and byte offset) is in the report and the other files are still replayed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tfship.client.batch.job import _atomic_write

from tfship.capture.records import CapturedCall, CaptureReadReport, read_capture
from tfship.errors import ConfigError, ServingError, TfshipError, UnavailableError
from tfship.tolerance import Tolerance, resolve_tolerances

__all__ = ["replay_capture", "ReplayReport", "RecordOutcome", "OutputAgreement"]

_CHUNK = 64  # records per committed chunk of a resumable replay
_EXACT = Tolerance(0.0, 0.0)


@dataclass
class RecordOutcome:
    """One replayed record: where it is in the capture, whether the answer agreed, how badly not."""

    position: str          # "file#index (offset N)"
    path: str
    index: int
    kind: str
    agreed: bool | None    # None: not comparable (request-only record)
    score: float           # worst |diff| / allowed over its outputs (> 1: out of tolerance; inf: mismatch)
    seconds: float
    outputs: dict[str, bool] = field(default_factory=dict)
    top1: dict[str, list[int]] = field(default_factory=dict)   # output -> [rows agreeing, rows]
    topk: dict[str, list[int]] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class OutputAgreement:
    """One output over all compared records."""

    name: str
    records: int
    agreed: int
    top1_rows: int = 0
    top1_agreed: int = 0
    topk_agreed: int = 0

    @property
    def rate(self) -> float:
        return self.agreed / self.records if self.records else 1.0

    def line(self, k: int) -> str:
        text = f"  {self.name}: {self.agreed}/{self.records} records agree ({100 * self.rate:.2f}%)"
        if self.top1_rows:
            text += (f", top-1 {100 * self.top1_agreed / self.top1_rows:.2f}%, top-{k} "
                     f"{100 * self.topk_agreed / self.top1_rows:.2f}% of {self.top1_rows} rows")
        return text


@dataclass
class ReplayReport:
    """What a replay found. ``ok`` when the agreement is at least ``min_agreement`` and nothing failed to read."""

    url: str
    model: str
    version: int | None
    label: str | None
    min_agreement: float
    top_k: int
    records: list[RecordOutcome] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def compared(self) -> list[RecordOutcome]:
        return [r for r in self.records if r.agreed is not None]

    @property
    def agreement(self) -> float:
        compared = self.compared
        return sum(r.agreed for r in compared if r.agreed) / len(compared) if compared else 1.0

    @property
    def ok(self) -> bool:
        return bool(self.records) and self.agreement >= self.min_agreement

    def outputs(self) -> list[OutputAgreement]:
        names = sorted({n for r in self.records for n in r.outputs})
        out = []
        for name in names:
            seen = [r for r in self.records if name in r.outputs]
            top1 = [r.top1[name] for r in seen if name in r.top1]
            topk = [r.topk[name] for r in seen if name in r.topk]
            out.append(OutputAgreement(name, len(seen), sum(r.outputs[name] for r in seen),
                                       sum(t[1] for t in top1), sum(t[0] for t in top1), sum(t[0] for t in topk)))
        return out

    def worst(self, count: int = 10) -> list[RecordOutcome]:
        """The least agreeing records, worst first (records that agreed are left out)."""
        bad = [r for r in self.compared if not r.agreed]
        return sorted(bad, key=lambda r: (-r.score, r.path, r.index))[:count]

    def latency(self) -> dict[str, float]:
        """The target's latency over the replayed calls, in milliseconds."""
        seconds = np.array([r.seconds for r in self.records]) * 1e3
        if not seconds.size:
            return {}
        return {"mean": float(seconds.mean()), "p50": float(np.percentile(seconds, 50)),
                "p90": float(np.percentile(seconds, 90)), "p99": float(np.percentile(seconds, 99))}

    def text(self, worst: int = 10) -> str:
        pinned = f" v{self.version}" if self.version is not None else (f" @{self.label}" if self.label else "")
        compared = self.compared
        head = "PASS" if self.ok else "FAIL"
        lines = [f"{head} {self.model}{pinned} via {self.url}: {len(self.records)} records replayed from "
                 f"{self.files} file(s), {len(compared)} compared, agreement "
                 f"{100 * self.agreement:.2f}% (min {100 * self.min_agreement:.2f}%)"]
        lines += [o.line(self.top_k) for o in self.outputs()]
        lat = self.latency()
        if lat:
            lines.append(f"  target latency: mean {lat['mean']:.2f} ms, p50 {lat['p50']:.2f} ms, "
                         f"p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms")
        bad = self.worst(worst)
        if bad:
            lines.append(f"  worst records ({len(bad)} of {len(compared) - sum(bool(r.agreed) for r in compared)} "
                         "disagreeing):")
            lines += [f"    {r.position}: {r.detail}" for r in bad]
        lines += [f"  read error: {e}" for e in self.read_errors]
        lines += [f"  note: {t}" for t in self.torn]
        return "\n".join(lines)

    __str__ = text

    def to_json(self, worst: int = 50) -> dict[str, Any]:
        return {"ok": self.ok, "url": self.url, "model": self.model, "version": self.version,
                "label": self.label, "records": len(self.records), "compared": len(self.compared),
                "agreement": self.agreement, "min_agreement": self.min_agreement,
                "outputs": [asdict(o) | {"rate": o.rate} for o in self.outputs()],
                "latency_ms": self.latency(), "worst": [asdict(r) for r in self.worst(worst)],
                "read_errors": self.read_errors, "torn": self.torn}


# ---------------------------------------------------------------------------------- comparison


def _score(expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> float:
    """Worst |diff| / allowed (0 when equal, > 1 when out of tolerance, inf for exact mismatches)."""
    if expected.shape != actual.shape:
        return float("inf")
    if expected.dtype.kind in "OSUb" or expected.dtype.kind in "iu" or tol == _EXACT:
        if expected.dtype.kind in "OSU":
            as_bytes = np.vectorize(lambda v: v.encode() if isinstance(v, str) else bytes(v), otypes=[object])
            equal = expected.size == 0 or np.array_equal(as_bytes(expected), as_bytes(actual))
        else:
            equal = np.array_equal(expected, actual)
        return 0.0 if equal else float("inf")
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    a = actual.astype(e.dtype)
    if not np.array_equal(np.isnan(e), np.isnan(a)):
        return float("inf")
    finite = ~np.isnan(e)
    diff = np.abs(a[finite] - e[finite])
    diff = np.where(a[finite] == e[finite], 0.0, diff)
    allowed = tol.atol + tol.rtol * np.abs(e[finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / allowed)
    return float(ratio.max()) if ratio.size else 0.0


def _classifier_shaped(expected: np.ndarray) -> bool:
    return expected.ndim == 2 and expected.shape[1] > 1 and expected.dtype.kind == "f"


def _compare(call: CapturedCall, answer: Mapping[str, np.ndarray], tolerances: Mapping[str, Tolerance],
             top_k: int, outcome: RecordOutcome) -> None:
    assert call.outputs is not None
    worst, details = 0.0, []
    for name, expected in call.outputs.items():
        expected = np.asarray(expected)
        actual = answer.get(name)
        if actual is None:
            score = float("inf")
            details.append(f"{name} missing from the answer")
        else:
            actual = np.asarray(actual)
            score = _score(expected, actual, tolerances.get(expected.dtype.name, _EXACT))
            if score > 1:
                details.append(f"{name}: shape {actual.shape} vs captured {expected.shape}"
                               if actual.shape != expected.shape else f"{name}: {score:.3g}x the tolerance")
            if _classifier_shaped(expected) and actual.shape == expected.shape:
                k = min(top_k, expected.shape[1])
                want = np.argmax(expected, axis=1)
                top1 = int(np.sum(np.argmax(actual, axis=1) == want))
                topk_idx = np.argsort(-actual, axis=1, kind="stable")[:, :k]
                topk = int(np.sum(np.any(topk_idx == want[:, None], axis=1)))
                outcome.top1[name] = [top1, expected.shape[0]]
                outcome.topk[name] = [topk, expected.shape[0]]
        outcome.outputs[name] = score <= 1
        worst = max(worst, score)
    outcome.score = worst
    outcome.agreed = worst <= 1
    outcome.detail = "; ".join(details) if details else "agrees"


# ---------------------------------------------------------------------------------- sending


def _examples_for(client: Any, examples: list[bytes]) -> list[Any]:
    if type(client).__name__.startswith("Rest"):  # REST sends examples as JSON objects
        from tfship.client.examples import _features_of

        from tfship.wire.protos import serving_wire_pb2 as pb

        return [_features_of(pb.Example.FromString(e)) for e in examples]
    return examples


def _send(client: Any, call: CapturedCall, model: str, version: int | None,
          label: str | None) -> dict[str, np.ndarray]:
    pin = {"version": version, "label": label}
    if call.kind == "predict":
        prediction = client.predict_detailed(model, call.inputs, signature=call.signature or None,
                                             output_filter=call.output_filter, **pin)
        return dict(prediction.outputs)
    if call.kind == "classify":
        result = client.classify(model, _examples_for(client, call.examples), signature=call.signature or None,
                                 **pin)
        labels = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])(
            np.asarray(result.labels, object)) if np.size(result.labels) else np.asarray(result.labels, object)
        out = {"scores": np.asarray(result.scores, np.float32)}
        if call.outputs is not None and np.size(call.outputs.get("classes", np.empty(0))) and any(
                v for v in np.asarray(call.outputs["classes"]).reshape(-1)):
            out["classes"] = labels
        return out
    if call.kind == "regress":
        values = client.regress(model, _examples_for(client, call.examples), signature=call.signature or None,
                                **pin)
        return {"outputs": np.asarray(values, np.float32)}
    raise _NotReplayable(f"{call.kind} records are not replayed: the client has no MultiInference call")


class _NotReplayable(Exception):
    pass


def _classify_outputs(call: CapturedCall) -> CapturedCall:
    # A Classify signature without classes captures empty labels: compare scores only.
    if call.kind == "classify" and call.outputs is not None and not any(
            v for v in np.asarray(call.outputs["classes"]).reshape(-1)):
        outputs = {"scores": call.outputs["scores"]}
        return CapturedCall(**{**call.__dict__, "outputs": outputs})
    return call


def _run_one(client: Any, call: CapturedCall, model: str, version: int | None, label: str | None,
             tolerances: Mapping[str, Tolerance], top_k: int) -> RecordOutcome:
    call = _classify_outputs(call)
    outcome = RecordOutcome(str(call.position), str(call.position.path), call.position.index, call.kind,
                            None, 0.0, 0.0)
    start = time.perf_counter()
    try:
        answer = _send(client, call, model, version, label)
    except _NotReplayable as exc:
        outcome.detail = str(exc)
        return outcome
    except UnavailableError:
        raise
    except ServingError as exc:
        outcome.seconds = time.perf_counter() - start
        outcome.agreed, outcome.score = (False, float("inf")) if call.outputs is not None else (None, 0.0)
        outcome.detail = f"the target answered {exc.code.name}: {exc.message}"
        return outcome
    outcome.seconds = time.perf_counter() - start
    if call.outputs is None:
        outcome.detail = "request-only record: not compared"
        return outcome
    _compare(call, answer, tolerances, top_k, outcome)
    return outcome


def _chunks(calls: Iterator[CapturedCall]) -> Iterator[tuple[int, list[CapturedCall]]]:
    chunk: list[CapturedCall] = []
    index = 0
    for call in calls:
        chunk.append(call)
        if len(chunk) == _CHUNK:
            yield index, chunk
            index, chunk = index + 1, []
    if chunk:
        yield index, chunk


def _chunk_file(state: Path, index: int) -> Path:
    return state / f"chunk-{index:07d}.json"


def replay_capture(client: Any, model: str, captures: Iterable[str | os.PathLike[str]], *,
                   version: int | None = None, label: str | None = None,
                   tolerances: Mapping[str, Any] | None = None, capture_model: str | None = None,
                   concurrency: int = 4, min_agreement: float = 1.0, top_k: int = 5,
                   state_dir: str | os.PathLike[str] | None = None, resume: bool = False,
                   progress: bool = False) -> ReplayReport:
    """Replay the calls in ``captures`` (files or directories) to ``model`` through ``client``.

    Only records of ``capture_model`` (default: ``model``) are replayed. ``tolerances`` as in
    :func:`check_parity` (per dtype; default :data:`~tfship.tolerance.DEFAULT_TOLERANCES`).
    Raises :class:`~tfship.errors.UnavailableError` when the target cannot be reached (at the
    start or mid-way: with ``state_dir`` the finished chunks are kept for ``resume``).
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}.")
    tols = resolve_tolerances(tolerances)
    paths = [os.fspath(c) for c in captures]
    missing = [c for c in paths if not os.path.exists(c)]
    if missing:
        raise ConfigError(f"capture not found: {', '.join(missing)}")
    # Reachability first: an unreachable target is one clear error, not N failed records.
    client.status(model, version=version)
    read = CaptureReadReport()
    report = ReplayReport(client.url, model, version, label, min_agreement, top_k)
    state = Path(state_dir) if state_dir is not None else None
    if state is not None:
        job = {"model": model, "version": version, "label": label, "captures": sorted(paths),
               "capture_model": capture_model or model}
        if state.exists() and any(state.glob("chunk-*.json")):
            if not resume:
                raise ConfigError(f"{state} holds an unfinished replay: pass --resume to continue it, or "
                                  "delete it to start over.")
            previous = json.loads((state / "job.json").read_text()) if (state / "job.json").exists() else None
            if previous is not None and previous != job:
                raise ConfigError(f"Cannot resume from {state}: the replay differs from the interrupted one.")
        state.mkdir(parents=True, exist_ok=True)
        _atomic_write(state / "job.json", json.dumps(job, sort_keys=True).encode())

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="records", desc=f"replay {model}", smoothing=0.1)
    calls = read_capture(paths, read, model=capture_model or model)
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfship-replay") as pool:
            # one future per record (all workers busy), committed a chunk at a time, in capture order
            pending: list[tuple[int, list[Future[RecordOutcome]]]] = []

            def finish(index: int, outcomes: list[RecordOutcome]) -> None:
                if state is not None:
                    _atomic_write(_chunk_file(state, index), json.dumps([asdict(o) for o in outcomes]).encode())
                report.records.extend(outcomes)
                if bar is not None:
                    bar.update(len(outcomes))

            def finish_first() -> None:
                first, futures = pending.pop(0)
                finish(first, [f.result() for f in futures])

            try:
                for index, chunk in _chunks(calls):
                    done = _chunk_file(state, index) if state is not None else None
                    if done is not None and done.exists():
                        finish(index, [RecordOutcome(**o) for o in json.loads(done.read_text())])
                        continue
                    pending.append((index, [pool.submit(_run_one, client, c, model, version, label, tols, top_k)
                                            for c in chunk]))
                    while len(pending) > max(1, (4 * concurrency) // _CHUNK) or (
                            pending and all(f.done() for f in pending[0][1])):
                        finish_first()
                while pending:
                    finish_first()
            finally:
                for _, futures in pending:
                    for future in futures:
                        future.cancel()
    except UnavailableError as exc:
        if state is not None:
            exc.hint = (f"{exc.hint}\n" if exc.hint else "") + (
                f"{len(report.records)} records are committed in {state}; rerun with --resume to continue.")
            exc.args = (f"{exc.message}\n{exc.hint}",)
        raise
    except TfshipError:
        raise
    finally:
        if bar is not None:
            bar.close()
    report.records.sort(key=lambda r: (r.path, r.index))
    report.read_errors, report.torn, report.files = read.errors, read.torn, len(read.files)
    if not report.records and not report.read_errors:
        raise ConfigError(f"No records of model {capture_model or model!r} in {', '.join(paths)}"
                          f" ({read.records} records of other models were skipped)." if read.records else
                          f"No records of model {capture_model or model!r} in {', '.join(paths)}.")
    return report
