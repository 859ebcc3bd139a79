"""Batch prediction on Ray Data: ``tfship predict ... --engine ray``.

The job is planned on the driver (:mod:`tfship.client.batch.blocks`: deterministic blocks of
input rows), then Ray Data runs it: a dataset of block numbers goes through ``map_batches`` over a
fixed pool of actors (``actors``), each holding one tfship client to the target (a server, a fleet
URL list, ``dns:///``, gRPC or REST, or an in-process export) and sending ``inflight`` requests of
``batch_size`` rows at a time. An actor reads its block, scores it, and commits the block's output
as ``part-NNNNNN.parquet`` (temp + fsync + rename) before it reports the block done.

Guarantees:

* **one version**: ``version``/``label`` (or the latest) is resolved once when the job starts and
  pinned on every request; it is stored in ``job.json``, so ``--resume`` keeps it too. If the
  fleet unloads it mid-job, the job stops and says so, keeping every committed block.
* **exactly once**: a block's output exists under one deterministic name or not at all; a block
  found committed is never sent again (a retried task, a restarted actor, ``--resume``).
* **resume**: ``resume=True`` re-runs only the blocks without a committed part.
* **bad rows**: a row the model rejects is found by splitting its request; without
  ``max_bad_rows`` the job stops naming file and row, with it the row goes to
  ``rejected/part-NNNNNN.jsonl`` with its error and the job goes on (fails past the limit).

Local: with no ``ray_address`` (and no Ray running in the process) Ray starts on this machine and
stops at the end; on a cluster, pass ``ray_address`` (``ray://HOST:10001`` or ``auto``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tfship.client.batch.blocks import (
    Block,
    InputFile,
    commit_part,
    commit_rejected,
    committed_blocks,
    describe,
    locate,
    part_path,
    plan_blocks,
    read_block,
    rejected_path,
)
from tfship.client.batching import batch_bounds
from tfship.client.types import SignatureInfo

from tfship.durable import fsync_dir
from tfship.errors import ConfigError, InvalidArgumentError, NotFoundError, ServingError, TfshipError

__all__ = ["ServedTarget", "RayJobResult", "run_ray_job", "BlockScorer"]

JOB_FILE = "job.json"
#: blocks an actor works on at once: one block's read and commit overlap another's requests
BLOCKS_PER_ACTOR = 2
#: per-actor figures: blocks and rows scored, busy seconds, and where they went (read, score, commit)
_FIGURES = ("blocks", "rows", "seconds", "read_s", "score_s", "commit_s")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ServedTarget:
    """Connects each actor to a served model: one URL, a fleet (comma list or list) or ``dns:///``."""

    url: str | tuple[str, ...]
    timeout: float = 60.0

    def __call__(self) -> Any:
        from tfship.client import ClientConfig, connect

        return connect(list(self.url) if isinstance(self.url, tuple) else self.url, ClientConfig(timeout=self.timeout))

    def describe(self) -> str:
        return ",".join(self.url) if isinstance(self.url, tuple) else self.url


@dataclass(frozen=True)
class RayJobResult:
    output: Path
    rows: int
    blocks: int
    resumed_blocks: int
    rejected_rows: int
    version: int
    seconds: float
    #: per actor process (pid): blocks and rows it scored in this run, its busy seconds and their
    #: split into reading the block, scoring it (requests) and committing its part; and its timeline
    #: in seconds after Ray got the job: process started, __init__ began/ended, first block, last end
    actors: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class _Job:
    """What every actor needs (pickled once per actor)."""

    target: Callable[[], Any]
    model: str
    version: int
    signature: str | None
    sig: SignatureInfo
    files: list[InputFile]
    blocks: list[Block]
    out: str
    batch_size: int
    inflight: int
    keep_bad_rows: bool


class BlockScorer:
    """The Ray Data actor: one client, one block at a time, each committed before it is reported."""

    def __init__(self, job: _Job) -> None:
        init_at = time.time()
        self.job = job
        self.client = job.target()
        # Shared by the blocks this actor runs at once (BLOCKS_PER_ACTOR): at most `inflight` requests
        # in flight per actor whatever it is reading or committing meanwhile.
        self.pool = ThreadPoolExecutor(max_workers=job.inflight, thread_name_prefix="tfship-ray")
        self.timeline = {"process_at": _process_started() or init_at, "init_at": init_at, "ready_at": time.time()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i in batch["block"]:
            block = self.job.blocks[int(i)]
            try:
                results.append({**self.score_block(block), "error": ""})
            except TfshipError as exc:
                # Reported as data: Ray pickles a task's exception without its __cause__, and the
                # driver must see the tfship error (its class, message and hint) to explain it.
                results.append({**self._summary(block, 0, 0, time.monotonic()), "error": _error_json(exc)})
        return {key: np.array([r[key] for r in results]) for key in results[0]}

    def score_block(self, block: Block) -> dict[str, Any]:
        job, out = self.job, Path(self.job.out)
        started = time.monotonic()
        if part_path(out, block).exists():  # a retry of a block already committed: never send it twice
            return self._summary(block, 0, _count_lines(rejected_path(out, block)), started)
        arrays = read_block(job.files, block, job.sig)
        read = time.monotonic()
        rows = len(next(iter(arrays.values())))
        if rows != block.rows:
            raise ConfigError(f"{Path(job.files[block.file].path).name}: block {block.index} has {rows} rows, "
                              f"{block.rows} were planned: the file changed while the job ran.")
        pieces = list(self.pool.map(lambda b: self._score(arrays, block, *b), batch_bounds(rows, job.batch_size)))
        kept = np.concatenate([p[0] for p in pieces])
        rejected = [r for p in pieces for r in p[2]]
        outputs = {k: np.concatenate([p[1][k] for p in pieces if p[1]]) for k in next(p[1] for p in pieces if p[1])} \
            if any(p[1] for p in pieces) else _empty_outputs(job.sig)
        scored = time.monotonic()
        if rejected:
            commit_rejected(out, block, rejected)
        first = job.files[block.file].first_row_id + block.start
        commit_part(out, block, first + kept, outputs)
        return self._summary(block, len(kept), len(rejected), started,
                             read_s=read - started, score_s=scored - read, commit_s=time.monotonic() - scored)

    def _summary(self, block: Block, scored: int, rejected: int, started: float, *, read_s: float = 0.0,
                 score_s: float = 0.0, commit_s: float = 0.0) -> dict[str, Any]:
        seconds = time.monotonic() - started
        return {"block": block.index, "rows": block.rows, "scored": scored, "rejected": rejected,
                "pid": os.getpid(), "seconds": seconds, "read_s": read_s, "score_s": score_s,
                "commit_s": commit_s, "started_at": time.time() - seconds, **self.timeline}

    def _score(self, arrays: dict[str, np.ndarray], block: Block, start: int,
               stop: int) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
        """Rows [start, stop) of the block: (kept row offsets, outputs, rejected rows). A rejected
        request is split in halves until the rows the model refuses are alone."""
        job = self.job
        try:
            answer = self.client.predict_detailed(job.model, {k: v[start:stop] for k, v in arrays.items()},
                                                  version=job.version, signature=job.signature)
        except InvalidArgumentError as exc:
            if stop - start > 1:
                middle = (start + stop) // 2
                left, right = self._score(arrays, block, start, middle), self._score(arrays, block, middle, stop)
                outputs = ({k: np.concatenate([left[1][k], right[1][k]]) for k in left[1]}
                           if left[1] and right[1] else left[1] or right[1])
                return np.concatenate([left[0], right[0]]), outputs, left[2] + right[2]
            where = locate(job.files, block, start)
            if not job.keep_bad_rows:
                raise InvalidArgumentError(
                    f"{where}: the model rejected this row: {exc.message}",
                    hint="Fix or drop the row, or pass --max-bad-rows N to write rejected rows to "
                         f"{Path(job.out) / 'rejected'} with their error and go on.") from None
            row = {"row_id": job.files[block.file].first_row_id + block.start + start, "where": where,
                   "error": exc.message, "input": {k: _jsonable(v[start]) for k, v in arrays.items()}}
            return np.zeros(0, np.int64), {}, [row]
        return np.arange(start, stop, dtype=np.int64), dict(answer.outputs), []


def _process_started() -> float | None:
    """This process's start as a Unix time (Linux /proc), to show what an actor's start-up costs."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _empty_outputs(sig: SignatureInfo) -> dict[str, np.ndarray]:
    return {name: np.zeros(0, np.float32) for name in sig.outputs}


def _jsonable(value: Any) -> Any:
    """A rejected row's input for its JSON line: numbers as numbers (NaN as NaN), bytes as text."""
    array = np.asarray(value)
    if array.dtype.kind in "OS":
        texts = [x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
        return np.array(texts, object).reshape(array.shape).tolist()
    return array.tolist()


def _error_json(exc: TfshipError) -> str:
    return json.dumps({"type": type(exc).__name__, "text": str(exc), "message": getattr(exc, "message", str(exc)),
                       "hint": getattr(exc, "hint", None)})


def _error_from_json(text: str) -> TfshipError:
    from tfship import errors

    data = json.loads(text)
    cls = getattr(errors, data["type"], None)
    if isinstance(cls, type) and issubclass(cls, ServingError):
        return cls(data["message"], hint=data["hint"])
    if isinstance(cls, type) and issubclass(cls, TfshipError):
        return cls(data["text"])
    return TfshipError(data["text"])


def _count_lines(path: Path) -> int:
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def _as_target(target: Any, timeout: float) -> Callable[[], Any]:
    if callable(target):
        return target  # type: ignore[no-any-return]
    if isinstance(target, (list, tuple)):
        return ServedTarget(tuple(target), timeout)
    return ServedTarget(str(target), timeout)


def _pin(client: Any, model: str, version: int | None, label: str | None,
         signature: str | None) -> tuple[int, SignatureInfo]:
    meta = client.metadata(model, version=version, label=label)
    sig = meta.signature(signature)
    if sig is None:
        wanted = signature or "serving_default"
        raise ConfigError(f"Model {model!r} version {meta.version} has no signature {wanted!r}; "
                          f"it has {sorted(meta.signatures)}.")
    return int(meta.version), sig


@contextlib.contextmanager
def _ray_running(address: str | None) -> Iterator[Any]:
    """Ray for this job: the one already initialized in this process, else a connection to
    ``address``, else a local Ray sized to this machine (stopped afterwards)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR"}
    if address is None:
        kwargs["object_store_memory"] = 256 << 20  # blocks are small; scoring is I/O bound
    ray.init(address=address, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def _tfship_cause(exc: BaseException) -> TfshipError | None:
    """The tfship error inside a Ray error (task errors wrap the actor's exception)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, TfshipError):
            return item
        todo += [item.__cause__, item.__context__, getattr(item, "cause", None)]
    return None


def _job_identity(model: str, version: int | None, label: str | None, signature: str | None, target: Any,
                  files: list[InputFile], block_rows: int, batch_size: int) -> dict[str, Any]:
    describe_target = getattr(target, "describe", None)
    return {"model": model, "version": version, "label": label, "signature": signature,
            "target": describe_target() if callable(describe_target) else repr(target),
            "block_rows": block_rows, "batch_size": batch_size, "inputs": describe(files)}


def run_ray_job(target: str | Sequence[str] | Callable[[], Any], model: str, inputs: str | os.PathLike[str],
                output: str | os.PathLike[str], *, version: int | None = None, label: str | None = None,
                signature: str | None = None, batch_size: int = 256, block_rows: int = 10_000,
                actors: int = 2, inflight: int = 2, actor_cpus: float = 0.5, max_bad_rows: int = 0,
                resume: bool = False, ray_address: str | None = None, timeout: float = 60.0,
                progress: bool = True, on_block: Callable[[dict[str, Any]], None] | None = None) -> RayJobResult:
    """Score every row of ``inputs`` (a file, directory or glob) into the directory ``output``.

    ``target``: a server URL, a fleet (list or comma list), ``dns:///...``, or a callable returning
    a client-like scorer (``tfship.deploy.export_scorer.ExportTarget`` for ``--export``).
    Concurrency is ``actors`` x ``inflight`` requests of ``batch_size`` rows. ``on_block`` is called
    on the driver with each finished block's summary (block, rows, rejected, pid, seconds).
    """
    started = time.monotonic()
    out = Path(output)
    scorer = _as_target(target, timeout)
    files, blocks = plan_blocks(inputs, block_rows)
    identity = _job_identity(model, version, label, signature, scorer, files, block_rows, batch_size)
    previous = _previous_job(out, identity, resume)

    client = scorer()
    try:
        if previous is not None:  # the resumed job keeps the version it started with, whatever the label says now
            pinned = int(previous["pinned_version"])
            try:
                pinned, sig = _pin(client, model, pinned, None, signature)
            except NotFoundError as exc:
                raise _unloaded(model, pinned, out, len(committed_blocks(out)), len(blocks), exc) from None
        else:
            pinned, sig = _pin(client, model, version, label, signature)
        pending = [b for b in blocks if b.index not in committed_blocks(out)]
        if pending:  # the schema check, on the driver, before any actor starts
            read_block(files, pending[0], sig)
    finally:
        client.close()

    out.mkdir(parents=True, exist_ok=True)
    if previous is None:
        _write_json(out / JOB_FILE, {**identity, "pinned_version": pinned})
    job = _Job(scorer, model, pinned, signature, sig, files, blocks, str(out.resolve()), batch_size, inflight,
               max_bad_rows > 0)
    total = sum(f.rows for f in files)
    done_before = len(blocks) - len(pending)
    rejected, per_actor = _run_blocks(job, pending, total, actors, actor_cpus, max_bad_rows, ray_address,
                                      progress, on_block)

    missing = sorted(set(range(len(blocks))) - committed_blocks(out))
    if missing:
        raise ServingError(f"{len(missing)} blocks have no committed output after the run (first: {missing[0]}): "
                           "rerun with --resume.")
    rejected = sum(_count_lines(rejected_path(out, b)) for b in blocks)
    for tmp in out.glob(".part-*.tmp"):
        tmp.unlink(missing_ok=True)  # temp files of actors killed mid-write
    _write_json(out / MANIFEST, {**identity, "pinned_version": pinned, "rows": total - rejected,
                                 "rejected_rows": rejected, "blocks": len(blocks),
                                 "parts": [part_path(out, b).name for b in blocks], "row_id": "row_id"})
    return RayJobResult(out, total, len(blocks), done_before, rejected, pinned, time.monotonic() - started,
                        per_actor)


def _previous_job(out: Path, identity: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    job_file = out / JOB_FILE
    if not job_file.exists():
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"Output directory {out} is not empty and holds no tfship job: give a new directory.")
        return None
    if not resume:
        raise ConfigError(f"{out} holds a previous job: pass --resume to continue it, or give a new output "
                          "directory to start over.")
    previous = json.loads(job_file.read_text())
    changed = sorted(k for k in identity if previous.get(k) != identity[k])
    if changed:
        raise ConfigError(f"Cannot resume into {out}: the job differs from the interrupted one in {changed}. "
                          "Rerun with the same options, or give a new output directory.")
    return previous  # type: ignore[no-any-return]


def _run_blocks(job: _Job, pending: list[Block], total: int, actors: int, actor_cpus: float, max_bad_rows: int,
                ray_address: str | None, progress: bool,
                on_block: Callable[[dict[str, Any]], None] | None) -> tuple[int, dict[int, dict[str, float]]]:
    out = Path(job.out)
    per_actor: dict[int, dict[str, float]] = {}
    job_started = time.time()
    waiting = {b.index for b in pending}
    rejected = sum(_count_lines(rejected_path(out, b)) for b in job.blocks if b.index not in waiting)
    if not pending:
        return rejected, per_actor
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - sum(b.rows for b in pending), unit="rows",
                   desc=f"predict {job.model} v{job.version} (ray)", smoothing=0.1)
    try:
        with _ray_running(ray_address) as ray:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the tqdm bar above shows rows/s and ETA
            context.print_on_execution_start = False
            blocks = ray.data.from_items([{"block": b.index} for b in pending], override_num_blocks=len(pending))
            scored = blocks.map_batches(BlockScorer, fn_constructor_args=(job,), batch_size=1, batch_format="numpy",
                                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=actor_cpus,
                                        max_concurrency=BLOCKS_PER_ACTOR)
            for summary in scored.iter_rows():
                summary = {k: v.item() if hasattr(v, "item") else v for k, v in summary.items()}
                error = summary.pop("error")
                if error:
                    raise _explained(job, _error_from_json(str(error)))
                figures = per_actor.setdefault(int(summary["pid"]), {
                    **dict.fromkeys(_FIGURES, 0.0), "first_block_at": float("inf"), "last_block_end_at": 0.0,
                    **{k: summary[k] - job_started for k in ("process_at", "init_at", "ready_at")}})
                figures["blocks"] += 1
                figures["rows"] += summary["scored"]
                for key in ("seconds", "read_s", "score_s", "commit_s"):
                    figures[key] += summary[key]
                figures["first_block_at"] = min(figures["first_block_at"], summary["started_at"] - job_started)
                figures["last_block_end_at"] = max(figures["last_block_end_at"],
                                                   summary["started_at"] + summary["seconds"] - job_started)
                rejected += int(summary["rejected"])
                if bar is not None:
                    bar.update(int(summary["rows"]))
                if on_block is not None:
                    on_block(summary)
                if rejected > max_bad_rows > 0:
                    raise InvalidArgumentError(
                        f"{rejected} rows were rejected, more than --max-bad-rows {max_bad_rows}; they are in "
                        f"{out / 'rejected'} with their errors.",
                        hint=_kept(out, len(job.blocks)))
    except TfshipError:
        raise
    except Exception as exc:
        cause = _tfship_cause(exc)
        if cause is None:
            raise
        raise _explained(job, cause) from None
    finally:
        if bar is not None:
            bar.close()
    return rejected, per_actor


def _explained(job: _Job, cause: TfshipError) -> TfshipError:
    """The actor's error with what the job keeps and how to go on."""
    out = Path(job.out)
    if isinstance(cause, NotFoundError):  # it was served when the job started: it was unloaded since
        return _unloaded(job.model, job.version, out, len(committed_blocks(out)), len(job.blocks), cause)
    note = _kept(out, len(job.blocks))
    if isinstance(cause, ServingError):
        cause.hint = f"{cause.hint}\n{note}" if cause.hint else note
        cause.args = (f"{cause.message}\n{cause.hint}",)
    else:
        cause.args = (f"{cause}\n{note}",)
    return cause


def _kept(out: Path, blocks: int) -> str:
    return (f"{len(committed_blocks(out))} of {blocks} blocks are committed in {out}; fix the cause and rerun "
            "the same command with --resume to score only the rest.")


def _unloaded(model: str, version: int, out: Path, committed: int, blocks: int, exc: ServingError) -> ServingError:
    return NotFoundError(
        f"Model {model!r} version {version}, which this job is pinned to, is no longer served ({exc.message}).",
        hint=(f"{committed} of {blocks} blocks are committed in {out} (all from version {version}). Load version "
              f"{version} again and rerun with --resume to finish on it, or start a new job in a new output "
              "directory to score with the version now served."))


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(json.dumps(value, sort_keys=True, indent=1).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
