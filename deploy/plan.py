"""The plan machinery of a verified hot-swap, shared by one server (:mod:`tfship.deploy.swap`) and a
fleet (:mod:`tfship.deploy.fleet`): the options, the staged version, every step of one swap or
rollback (:class:`SwapPlan`; a fleet's plan overrides the steps that touch replicas) and the helpers
both use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tfship.deploy.history import SwapRecord, append_record, last_promoted

from tfship.durable import fsync_dir
from tfship.errors import ServingError, SwapError, TfshipError

if TYPE_CHECKING:
    from tfship.client.types import ModelMetadata, SignatureInfo, VersionStatus

__all__ = [
    "SwapOptions", "SwapPlan", "Staged", "SwapRecord", "ServingClient", "report_dict", "reload_config",
    "signature_differences",
]


class ServingClient(Protocol):
    """What a swap plan's steps ask of "the server" (:class:`tfship.client.Client` is one): the calls
    are typed, so a step calling something else fails type checking. A fleet's view answers the
    shared steps' calls (``signature_info``, ``wait_until_available``) and overrides the others."""

    url: str

    def status(self, model: str, *, version: int | None = None,
               timeout: float | None = None) -> list[VersionStatus]: ...

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None,
                 timeout: float | None = None) -> ModelMetadata: ...

    def signature_info(self, model: str, *, version: int | None = None, label: str | None = None,
                       signature: str | None = None) -> SignatureInfo: ...

    def wait_until_available(self, model: str, version: int | None = None, *,
                             timeout: float = 60.0, poll_interval: float = 0.1) -> int: ...



@dataclass(frozen=True)
class SwapOptions:
    """How a swap reaches the server and what it may do.

    ``url``: the live server (``grpc://`` needed for ``reload="grpc"``; REST works for latest-N).
    ``label``: move this version label instead of relying on the latest-N policy.
    ``config_file``: the model config file the server was started with (required with ``label``);
    tfship rewrites it so that a restart serves what the swap left behind.
    ``reload``: ``"grpc"`` pushes the config with HandleReloadConfigRequest; ``"poll"`` only
    rewrites the file and waits for a server started with ``--model_config_file_poll_wait_seconds``.
    ``retention``: version dirs kept on disk (the serving one included), so rollback has a target.
    """

    url: str
    label: str | None = None
    config_file: str | os.PathLike[str] | None = None
    reload: str = "grpc"
    retention: int = 2
    allow_signature_change: bool = False
    timeout: float = 120.0
    tolerances: Mapping[str, Any] | None = None
    verify_in_process: bool = True
    on_event: Callable[[str], None] | None = field(default=None, compare=False)
    #: A fleet (``url`` lists several replicas or is a dns:/// name): how many replicas must answer
    #: when the swap starts (default: all); the others are left out (see :mod:`tfship.deploy.fleet`).
    min_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.label is not None and self.config_file is None:
            raise SwapError(
                f"Moving label {self.label!r} needs the model config file the server reads: pass "
                "config_file= (CLI: --config FILE); a server started with --model_base_path has no labels."
            )
        if self.reload not in ("grpc", "poll"):
            raise SwapError(f"reload must be 'grpc' or 'poll', not {self.reload!r}.")
        if self.retention < 1:
            raise SwapError("retention must keep at least the serving version (>= 1).")
        if self.min_replicas is not None and self.min_replicas < 1:
            raise SwapError(f"min_replicas must be at least 1, not {self.min_replicas}.")


# --------------------------------------------------------------------------- signatures


def signature_differences(old: Any, new: Any) -> list[str]:
    """Human-readable differences between two serving signatures (inputs/outputs: name, dtype, shape).

    ``old``/``new`` are :class:`tfship.client.types.SignatureInfo`-like (``.inputs``/``.outputs``
    mapping names to objects with ``.dtype`` and ``.shape``). Empty list = compatible.
    """
    diffs: list[str] = []
    for kind in ("inputs", "outputs"):
        before, after = _by_name(getattr(old, kind)), _by_name(getattr(new, kind))
        for key in sorted(set(before) - set(after)):
            diffs.append(f"{kind[:-1]} {key!r} removed (was {_spec(before[key])})")
        for key in sorted(set(after) - set(before)):
            diffs.append(f"{kind[:-1]} {key!r} added ({_spec(after[key])})")
        for key in sorted(set(before) & set(after)):
            a, b = before[key], after[key]
            if a.dtype != b.dtype:
                diffs.append(f"{kind[:-1]} {key!r} dtype {a.dtype} -> {b.dtype}")
            if _shape(a) != _shape(b):
                diffs.append(f"{kind[:-1]} {key!r} shape {_shape(a)} -> {_shape(b)}")
    return diffs


def _by_name(specs: Any) -> Mapping[str, Any]:
    # The client reports {name: spec}; export manifests keep a list of specs with .name.
    return specs if isinstance(specs, Mapping) else {spec.name: spec for spec in specs}


def _shape(spec: Any) -> list[int] | None:
    return None if spec.shape is None else [int(d) for d in spec.shape]


def _spec(spec: Any) -> str:
    return f"{spec.dtype} {_shape(spec)}"


# --------------------------------------------------------------------------- the plan


@dataclass
class Staged:
    """A version ready to promote: where its dir is now (staging, or already live)."""

    version: int
    path: Path
    live: bool


class SwapPlan:
    """One swap or rollback of one model: the steps, in the order they must happen."""

    def __init__(self, models_dir: Path, name: str, options: SwapOptions) -> None:
        from tfship.export.versions import validate_model_name

        self.models_dir = models_dir
        self.name = validate_model_name(name)
        self.options = options
        self.model_dir = models_dir / name
        self.staging = models_dir / ".tfship" / "staging" / name
        self.quarantine = models_dir / ".tfship" / "quarantine" / name
        if not self.model_dir.is_dir():
            raise SwapError(
                f"{self.model_dir} does not exist: swap works on a live model dir that the server "
                f"serves (export the first version with `tfship export ... --base {models_dir} --name {name}`)."
            )

    # ---------------------------------------------------------------- helpers

    def client(self) -> Any:  # a tfship.client.Client (a ServingClient, and a context manager)
        from tfship.client import connect

        return connect(self.options.url)

    def emit(self, message: str) -> None:
        if self.options.on_event is not None:
            self.options.on_event(message)

    def live_versions(self) -> dict[int, Path]:
        from tfship.export.versions import list_versions

        return list_versions(self.model_dir)

    def current_default(self, client: ServingClient) -> int | None:
        """The version unlabelled requests (or the label) resolve to right now."""
        if self.options.label is not None:
            entries, index = self._config_entry()
            labels = entries[index].version_labels
            if self.options.label in labels:
                return int(labels[self.options.label])
        available = [v.version for v in client.status(self.name) if v.available]
        return max(available) if available else None

    def previous_good(self, current: int | None) -> int:
        for record in last_promoted(self.models_dir, self.name, self.options.label):
            if record.to_version == current and record.from_version is not None:
                return record.from_version
        older = sorted(v for v in self.live_versions() if current is None or v < current)
        if not older:
            raise SwapError(
                f"No previous version of {self.name!r} to roll back to: the history has no promotion "
                f"to version {current} and no older version dir is left in {self.model_dir}."
            )
        return older[-1]

    def record(self, record: SwapRecord) -> SwapRecord:
        append_record(self.models_dir, record)
        return record

    def fail(self, record: SwapRecord) -> SwapError:
        self.record(record)
        return SwapError(f"Swap of {self.name!r} {record.outcome}: {record.reason}", record=record)

    # ---------------------------------------------------------------- staging

    def stage(self, new_model: Any, version: int | None, export_kwargs: Mapping[str, Any] | None) -> Staged:
        if version is not None:
            live = self.live_versions()
            if version in live:
                return Staged(version, live[version], live=True)
            staged = self.staging / str(version)
            if staged.is_dir():
                return Staged(version, staged, live=False)
            raise SwapError(
                f"Version {version} of {self.name!r} is neither in {self.model_dir} nor staged in "
                f"{self.staging}; export it first or pass the model to swap."
            )
        from tfship.export import export_model
        from tfship.export.versions import list_versions

        taken = set(self.live_versions()) | set(list_versions(self.staging) if self.staging.is_dir() else {})
        quarantined = set(list_versions(self.quarantine) if self.quarantine.is_dir() else {})
        next_version = max(taken | quarantined | {0}) + 1
        self.staging.parent.mkdir(parents=True, exist_ok=True)
        self.emit(f"exporting {self.name} version {next_version} into staging")
        result = export_model(new_model, self.staging.parent, self.name, version=next_version,
                              **dict(export_kwargs or {}))
        return Staged(int(result.version), Path(result.path), live=False)

    # ---------------------------------------------------------------- guard rails

    def guard(self, client: ServingClient, current: int | None, staged: Staged) -> None:
        """Signature guard and in-process parity, before anything is published.

        Raises :class:`SwapError` (recorded, the version set aside) when the version must not go on.
        """
        base = {"model": self.name, "action": "swap", "from_version": current,
                "to_version": staged.version, "label": self.options.label}
        if current is not None and current == staged.version:
            raise SwapError(f"Version {staged.version} of {self.name!r} is already the served default.")
        if current is not None:
            try:
                new_signature = _disk_signature(staged.path)
            except TfshipError as exc:
                where = self._set_aside(staged)
                reason = f"version {staged.version} is not a servable SavedModel: {exc}"
                raise self.fail(SwapRecord(**base, outcome="failed", quarantined=where, reason=reason)) from exc
            diffs = signature_differences(client.signature_info(self.name, version=current), new_signature)
            if diffs and not self.options.allow_signature_change:
                self._set_aside(staged)
                raise self.fail(SwapRecord(**base, outcome="refused", reason=(
                    "the new version's serving signature is incompatible with the serving version: "
                    + "; ".join(diffs) + ". Pass allow_signature_change=True (CLI: --allow-signature-change) "
                    "if every client is ready for it.")))
        if self.options.verify_in_process and not staged.live:
            self.emit(f"verifying version {staged.version} in-process against its reference samples")
            problem = _in_process_parity(self.name, staged, self.options.tolerances)
            if problem is not None:
                where = self._set_aside(staged)
                raise self.fail(SwapRecord(**base, outcome="failed", reason=problem, quarantined=where))

    # ---------------------------------------------------------------- promote

    def promote(self, client: ServingClient, current: int | None, staged: Staged) -> SwapRecord:
        base = {"model": self.name, "action": "swap", "from_version": current,
                "to_version": staged.version, "label": self.options.label}
        if self.options.label is not None:
            return self._promote_label(client, current, staged, base)

        published_at = time.monotonic()
        if not staged.live:
            staged.path = self._publish(staged)
        self.emit(f"published {self.model_dir / str(staged.version)}; waiting until the server serves it")
        try:
            client.wait_until_available(self.name, staged.version, timeout=self.options.timeout)
            latency = time.monotonic() - published_at
            report = self._server_parity(client, staged)
            self._wait_default(client, staged.version)
        except TfshipError as exc:
            where = self._withdraw(client, staged, current)
            raise self.fail(SwapRecord(**base, outcome="failed", quarantined=where,
                                       reason=f"version {staged.version} did not pass on the server: {exc}")) from exc
        retired = self._retire(keep={staged.version})
        return self.record(SwapRecord(**base, outcome="promoted", parity=report,
                                      publish_to_serving_s=round(latency, 4), retired=retired))

    def _promote_label(self, client: ServingClient, current: int | None, staged: Staged,
                       base: dict[str, Any]) -> SwapRecord:
        label = self.options.label
        assert label is not None
        entries, index = self._config_entry()
        entry = entries[index]
        labels = dict(entry.version_labels)
        loaded = set(_specific_versions(entry)) | set(labels.values())
        if not staged.live:
            staged.path = self._publish(staged)
        published_at = time.monotonic()
        self.emit(f"push 1/3: load version {staged.version} next to {sorted(loaded)}")
        try:
            self._push(entries, index, loaded | {staged.version}, labels)
            client.wait_until_available(self.name, staged.version, timeout=self.options.timeout)
            latency = time.monotonic() - published_at
            report = self._server_parity(client, staged)
        except TfshipError as exc:
            self._push(entries, index, loaded, labels)
            where = self._withdraw(client, staged, current)
            raise self.fail(SwapRecord(**base, outcome="failed", quarantined=where,
                                       reason=f"version {staged.version} did not pass on the server: {exc}")) from exc
        self.emit(f"push 2/3: move label {label!r} {current} -> {staged.version}")
        labels[label] = staged.version
        self._push(entries, index, loaded | {staged.version}, labels)
        self._wait_label(client, label, staged.version)
        self.emit("push 3/3: unload versions no label points at")
        keep = set(labels.values())
        self._push(entries, index, keep, labels)
        retired = self._retire(keep=keep)
        return self.record(SwapRecord(**base, outcome="promoted", parity=report,
                                      publish_to_serving_s=round(latency, 4), retired=retired))

    # ---------------------------------------------------------------- rollback

    def roll_back_to(self, client: ServingClient, current: int | None, target: int) -> SwapRecord:
        base = {"model": self.name, "action": "rollback", "from_version": current,
                "to_version": target, "label": self.options.label}
        live = self.live_versions()
        if target not in live:
            raise self.fail(SwapRecord(**base, outcome="failed", reason=(
                f"version {target} is no longer in {self.model_dir} (retired); raise retention to keep "
                "rollback targets on disk")))
        if self.options.label is not None:
            entries, index = self._config_entry()
            labels = dict(entries[index].version_labels)
            keep = set(labels.values())
            self._push(entries, index, keep | {target}, labels)
            client.wait_until_available(self.name, target, timeout=self.options.timeout)
            labels[self.options.label] = target
            self._push(entries, index, keep | {target}, labels)
            self._wait_label(client, self.options.label, target)
            self._push(entries, index, set(labels.values()), labels)
            return self.record(SwapRecord(**base, outcome="rolled_back"))
        # latest-N: every version above the target leaves the live dir (TF Serving keeps serving
        # the newest one until the target is loaded, so requests keep flowing).
        newer = [v for v in live if v > target]
        where = None
        for v in sorted(newer):
            where = self._move(live[v], self.quarantine / str(v))
        client.wait_until_available(self.name, target, timeout=self.options.timeout)
        self._wait_default(client, target)
        return self.record(SwapRecord(**base, outcome="rolled_back", quarantined=where))

    # ---------------------------------------------------------------- file moves

    def _publish(self, staged: Staged) -> Path:
        from tfship.export.publish import publish

        # Export's publish: one rename under the model dir's allocation lock, never replacing a
        # version (a concurrent `tfship export` cannot take the same number), readable by the
        # server's user like the model dir is.
        _, target = publish(staged.path, self.model_dir, staged.version)
        staged.live = True
        return target

    def _move(self, source: Path, target: Path) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.name}.{int(time.time())}")
        os.rename(source, target)
        fsync_dir(source.parent)
        return str(target)

    def _set_aside(self, staged: Staged) -> str | None:
        """Move a version that must not be served out of the way (staging or live)."""
        if not staged.path.exists():
            return None
        return self._move(staged.path, self.quarantine / str(staged.version))

    def _withdraw(self, client: ServingClient, staged: Staged, current: int | None) -> str | None:
        where = self._set_aside(staged)
        if current is not None and self.options.label is None:
            # Under latest-N the server re-aspires the old version once the new dir is gone.
            try:
                client.wait_until_available(self.name, current, timeout=self.options.timeout)
                self._wait_default(client, current)
            except TfshipError:
                pass
        return where

    def _retire(self, keep: set[int]) -> list[int]:
        """Delete the oldest version dirs beyond ``retention`` (never one in ``keep``)."""
        live = self.live_versions()
        ordered = sorted(live, reverse=True)
        kept = set(ordered[: self.options.retention]) | keep
        retired = []
        for v in ordered:
            if v not in kept:
                graveyard = self.models_dir / ".tfship" / "retired" / self.name / str(v)
                self._move(live[v], graveyard)
                shutil.rmtree(graveyard, ignore_errors=True)
                retired.append(v)
        return retired

    # ---------------------------------------------------------------- server checks

    def _server_parity(self, client: ServingClient, staged: Staged) -> dict[str, Any]:
        from tfship.client.parity import check_parity

        report = check_parity(client, self.name, self.model_dir / str(staged.version),
                              version=staged.version, tolerances=self.options.tolerances)
        if not report.ok:
            raise SwapError(f"served outputs differ from the reference:\n{report}")
        return report_dict(report)

    def _wait_default(self, client: ServingClient, version: int) -> None:
        """Wait until unlabelled requests resolve to ``version`` (highest AVAILABLE)."""
        self._wait(lambda: client.metadata(self.name).version == version,
                   f"the server to answer unlabelled requests with version {version}")

    def _wait_label(self, client: ServingClient, label: str, version: int) -> None:
        self._wait(lambda: client.metadata(self.name, label=label).version == version,
                   f"label {label!r} to resolve to version {version}")

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.options.timeout
        delay = 0.05
        while True:
            try:
                if condition():
                    return
            except ServingError:
                pass
            if time.monotonic() > deadline:
                raise SwapError(f"Timed out after {self.options.timeout:g} s waiting for {what}.")
            time.sleep(delay)  # polling the server's state; bounded by the deadline above
            delay = min(delay * 1.5, 0.5)

    # ---------------------------------------------------------------- model config

    def _reload(self, text: str) -> None:
        reload_config(self.options.url, text, self.options.timeout)

    def _config_entry(self) -> tuple[list[Any], int]:
        from tfship.serving.config.model_config import model_entries, read_model_config_file

        entries = model_entries(read_model_config_file(self.options.config_file))  # type: ignore[arg-type]
        for index, entry in enumerate(entries):
            if entry.name == self.name:
                return entries, index
        raise SwapError(f"Model {self.name!r} is not in {self.options.config_file}.")

    def _push(self, entries: list[Any], index: int, versions: set[int], labels: dict[str, int]) -> None:
        """Write the config file atomically and make the server apply it."""
        from dataclasses import replace

        from tfship.serving.config.model_config import Specific, format_model_config

        updated = list(entries)
        updated[index] = replace(entries[index], version_policy=Specific(sorted(versions)),
                                 version_labels=dict(labels))
        text = format_model_config(updated)
        path = Path(self.options.config_file)  # type: ignore[arg-type]
        tmp = path.with_name(f".{path.name}.tfship-tmp")
        tmp.write_text(text)
        # Keep the file's mode: a server running as another user (Docker: uid 10001) must still
        # read it on a restart or a config poll, whatever this process's umask.
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        if self.options.reload == "grpc":
            self._reload(text)
        # With reload="poll" the caller's waits (AVAILABLE, label resolution) observe the effect.


# --------------------------------------------------------------------------- helpers


def _specific_versions(entry: Any) -> list[int]:
    from tfship.serving.config.model_config import Specific

    policy = entry.version_policy
    return list(policy.versions) if isinstance(policy, Specific) else []


def _disk_signature(version_dir: Path) -> Any:
    """The serving_default signature of an exported version, read from disk (no server needed)."""
    from tfship.export.signature_defs import read_signature_defs

    signatures = read_signature_defs(version_dir)
    try:
        return signatures["serving_default"]
    except KeyError:
        raise SwapError(f"{version_dir} has no serving_default signature; it cannot replace a served model.") from None


def _in_process_parity(name: str, staged: Staged, tolerances: Mapping[str, Any] | None) -> str | None:
    """Load the version with the server's own runtime and replay its reference samples."""
    from tfship.serving.runtime.servable import Servable

    from tfship.manifest import load_samples
    from tfship.tolerance import compare_outputs, resolve_tolerances

    try:
        inputs, expected = load_samples(staged.path)
    except (OSError, TfshipError, ValueError) as exc:
        return f"version {staged.version} has no readable reference samples ({exc}); export it with tfship"
    try:
        servable = Servable.load(name, staged.version, staged.path)
    except TfshipError as exc:
        return f"version {staged.version} does not load: {exc}"
    try:
        actual = servable.predict("serving_default", inputs)
    except TfshipError as exc:
        return f"version {staged.version} fails on its own samples: {exc}"
    finally:
        servable.close()
    diffs = compare_outputs(expected, actual, resolve_tolerances(tolerances))
    bad = [d for d in diffs if not d.ok]
    if bad:
        return "outputs differ from the reference samples: " + "; ".join(str(d) for d in bad)
    return None


def report_dict(report: Any) -> dict[str, Any]:
    """A parity report as the swap history records it."""
    return {
        "ok": bool(report.ok),
        "rows": report.rows,
        "outputs": {o.name: {"max_abs": o.max_abs, "max_rel": o.max_rel, "ok": o.ok} for o in report.outputs},
    }


def reload_config(url: str, text: str, timeout: float) -> None:
    """HandleReloadConfigRequest with the full config (TF Serving replaces its config with it)."""
    from tfship.client import connect

    if not url.startswith("grpc://"):
        raise SwapError(f"reload='grpc' needs a grpc:// URL, got {url!r}; or use reload='poll'.")
    with connect(url) as client:
        client.reload_config(text, timeout=timeout)
