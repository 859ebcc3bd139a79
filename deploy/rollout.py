"""Progressive rollout over a fleet: shadow, canary steps, then promote or roll back everywhere.

``tfship swap`` moves 100 % of every replica at once. A rollout moves in steps and judges each one
on the candidate's *predictions* as well as its errors and latency, on every replica:

1. swap's guard rail (signature) and pre-flight parity (the export's samples, in-process);
2. the model config labels the serving version ``stable``; every replica is told to route unpinned
   requests by that label (the rollout admin, :mod:`tfship.deploy.rollout_admin`), then the
   candidate is loaded beside it, passes parity *on every replica*, and is labelled ``canary``;
3. each step (``--steps``) is set on every replica and confirmed from each replica's answer; the
   tool then reads every replica's window about once a second and judges the gates
   (:mod:`tfship.deploy.rollout_plan`);
4. a failed gate rolls back on every replica at once (the candidate stops answering first, then is
   unloaded and set aside in quarantine), naming the replica, the gate and the numbers; the last
   step promotes (``stable`` moves to the candidate everywhere, the old version unloads once idle);
   either way a history record is written.

The step settings carry a lease the tool renews on every poll: a tool that dies (SIGKILL) leaves
the replicas serving ``stable`` once the lease runs out. Ctrl-C pauses (stable only) and keeps the
rollout's state in ``MODELS_DIR/.tfship/rollout/NAME.json``: ``resume_rollout`` (``--resume``)
starts again at the step it stopped in, ``abort_rollout`` (``--abort``) rolls back.

>>> options = RolloutOptions(url="grpc://10.0.0.1:8500,10.0.0.2:8500", config_file="models/models.config")
>>> rollout("models", "mnist", "mnist_v2.keras", options=options).outcome  # doctest: +SKIP
'promoted'
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tfship.deploy.history import SwapRecord
from tfship.deploy.plan import Staged, SwapOptions
from tfship.deploy.rollout_admin import ReplicaAdmin, RolloutUnsupported
from tfship.deploy.rollout_plan import (
    DEFAULT_GATES,
    DEFAULT_STEPS,
    GateFailure,
    Gates,
    Step,
    judge,
    parse_gates,
    parse_steps,
)

from tfship.durable import fsync_dir
from tfship.errors import FailedPreconditionError, ServingError, SwapError, TfshipError

__all__ = ["RolloutOptions", "rollout", "resume_rollout", "abort_rollout", "rollout_status", "RolloutUnsupported"]

STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True)
class RolloutOptions:
    """How a rollout reaches the fleet, how it steps, and what it must pass.

    ``url``: the replicas (a comma list or ``dns:///NAME:PORT``; each replica is asked directly).
    ``config_file``: the model config file the replicas read (labels live there).
    ``steps``/``gates``: see :mod:`tfship.deploy.rollout_plan`. ``shadow_percent``: share of the
    unpinned requests that stable answered which are also run on the candidate, in every step.
    ``min_replicas``: replicas that must keep answering (default: all); below it the rollout fails
    and rolls back; at or above it the step goes on with the ones left.
    ``lease_seconds``: how long a replica keeps a step's settings without hearing from this tool.
    """

    url: str
    config_file: str | os.PathLike[str]
    steps: str = DEFAULT_STEPS
    gates: str = DEFAULT_GATES
    shadow_percent: float = 10.0
    min_replicas: int | None = None
    lease_seconds: float = 30.0
    poll_seconds: float = 1.0
    #: a step waiting for min_pairs gives up after this many times its duration (at least 60 s more)
    patience: float = 3.0
    timeout: float = 120.0
    retention: int = 2
    allow_signature_change: bool = False
    verify_in_process: bool = True
    tolerances: Mapping[str, Any] | None = None
    reload: str = "grpc"
    on_event: Callable[[str], None] | None = field(default=None, compare=False)

    def swap_options(self) -> SwapOptions:
        return SwapOptions(url=self.url, label=STABLE, config_file=self.config_file, reload=self.reload,
                           retention=self.retention, allow_signature_change=self.allow_signature_change,
                           timeout=self.timeout, tolerances=self.tolerances,
                           verify_in_process=self.verify_in_process, on_event=self.on_event,
                           min_replicas=self.min_replicas)


def state_path(models_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(models_dir) / ".tfship" / "rollout" / f"{name}.json"


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise SwapError(f"The rollout state {path} is unreadable ({exc}); remove it after checking the fleet "
                        "with `tfship rollout --status`.") from None


# --------------------------------------------------------------------------- public API


def rollout(models_dir: str | os.PathLike[str], name: str, new_model: Any = None, *, version: int | None = None,
            options: RolloutOptions, export_kwargs: Mapping[str, Any] | None = None) -> SwapRecord:
    """Roll a new version of ``name`` out in steps over the fleet; promote it or roll it back.

    Returns the history record of the promotion; raises :class:`SwapError` (with ``.record``) when
    the candidate was refused, failed a gate (rolled back everywhere) or the fleet failed.
    """
    if (new_model is None) == (version is None):
        raise SwapError("Pass either a new model to export or version= of an exported one (not both).")
    run = _Rollout(Path(models_dir), name, options)
    existing = _read_state(run.state_file)
    if existing is not None:
        raise SwapError(f"A rollout of {name!r} to version {existing['candidate']} is {existing['phase']} "
                        f"({run.state_file}); resume it (--resume) or abort it (--abort) first.")
    return run.start(new_model, version, export_kwargs)


def resume_rollout(models_dir: str | os.PathLike[str], name: str, *, options: RolloutOptions) -> SwapRecord:
    """Continue an interrupted rollout at the step it stopped in (that step starts again)."""
    run = _Rollout(Path(models_dir), name, options)
    return run.resume()


def abort_rollout(models_dir: str | os.PathLike[str], name: str, *, options: RolloutOptions,
                  reason: str = "aborted by the user") -> SwapRecord:
    """Roll an interrupted rollout back on every replica (stable keeps serving)."""
    run = _Rollout(Path(models_dir), name, options)
    return run.abort(reason)


def rollout_status(models_dir: str | os.PathLike[str], name: str, url: str | None = None,
                   timeout: float = 5.0) -> dict[str, Any]:
    """The saved rollout state (if any) and what every replica reports now."""
    from tfship.client import ClientConfig, connect

    saved = _read_state(state_path(models_dir, name))
    target = url or (saved or {}).get("url")
    replicas: list[dict[str, Any]] = []
    if target:
        with connect(target, ClientConfig(timeout=timeout)) as client:
            for handle in client.replicas():
                admin = ReplicaAdmin(handle.url, timeout)
                try:
                    replicas.append({"url": handle.url, **admin.get(name)})
                except RolloutUnsupported as exc:
                    replicas.append({"url": handle.url, "error": str(exc)})
                except ServingError as exc:
                    replicas.append({"url": handle.url, "error": exc.message.splitlines()[0]})
                finally:
                    admin.close()
    return {"model": name, "saved": saved, "replicas": replicas}


# --------------------------------------------------------------------------- the run


class _Rollout:
    def __init__(self, models_dir: Path, name: str, options: RolloutOptions) -> None:
        from tfship.deploy.fleet import FleetPlan

        self.options = options
        self.steps = parse_steps(options.steps)
        self.gates: Gates = parse_gates(options.gates)
        if not 0 <= options.shadow_percent <= 100:
            raise SwapError(f"shadow_percent must be 0-100, not {options.shadow_percent}.")
        if options.lease_seconds < 3 * options.poll_seconds:
            raise SwapError("lease_seconds must be at least 3 polls, or a slow poll would expire it.")
        self.plan = FleetPlan(models_dir, name, options.swap_options())
        self.name = self.plan.name
        self.models_dir = models_dir
        self.state_file = state_path(models_dir, name)
        self.admins: dict[str, ReplicaAdmin] = {}
        self.lost: dict[str, str] = {}
        self.stable_p99: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    def emit(self, message: str) -> None:
        if self.options.on_event is not None:
            self.options.on_event(message)

    # ------------------------------------------------------------ entry points

    def start(self, new_model: Any, version: int | None, export_kwargs: Mapping[str, Any] | None) -> SwapRecord:
        with self.plan.client() as client:
            self._connect_admins()
            entries, index = self.plan._config_entry()
            current = entries[index].version_labels.get(STABLE) or self._fleet_default()
            if current is None:
                raise SwapError(f"No replica serves {self.name!r} yet: `tfship swap` or export a first version.")
            staged = self.plan.stage(new_model, version, export_kwargs)
            base = self._base(current, staged.version)
            self.plan.guard(client, current, staged)
            self.state = {"id": uuid.uuid4().hex[:8], "model": self.name, "stable": current,
                          "candidate": staged.version, "url": self.options.url,
                          "config_file": str(self.options.config_file), "steps": self.options.steps,
                          "gates": self.gates.text(), "shadow_percent": self.options.shadow_percent,
                          "step": 0, "phase": "loading", "started": time.time()}
            _write_state(self.state_file, self.state)
            try:
                parity = self._load_candidate(client, current, staged)
            except TfshipError as exc:
                self._roll_back(current, staged.version)
                where = self.plan._set_aside(staged)
                self._clear_state()
                raise self._fail(base, f"the candidate did not pass on the fleet: {exc}", quarantined=where) from exc
            self.state["parity"] = parity
            return self._run_steps(client, base, start_at=0)

    def resume(self) -> SwapRecord:
        """The saved rollout goes on with its own steps, gates and shadow rate (not today's flags)."""
        saved = self._saved("resume")
        self.steps, self.gates = parse_steps(saved["steps"]), parse_gates(saved["gates"])
        self.options = replace(self.options, steps=saved["steps"], gates=saved["gates"],
                               shadow_percent=float(saved["shadow_percent"]))
        with self.plan.client() as client:
            self._connect_admins()
            if saved["phase"] == "loading":
                self._abort_now("the rollout was interrupted while loading the candidate")
            self.emit(f"resuming the rollout of {self.name} {saved['stable']} -> {saved['candidate']} "
                      f"at step {saved['step'] + 1}")
            return self._run_steps(client, self._base(saved["stable"], saved["candidate"]),
                                   start_at=int(saved["step"]))

    def abort(self, reason: str) -> SwapRecord:
        self._saved("abort")
        with self.plan.client():
            self._connect_admins()
            self._abort_now(reason)
        raise AssertionError("unreachable")  # _abort_now raises

    def _saved(self, verb: str) -> dict[str, Any]:
        saved = _read_state(self.state_file)
        if saved is None:
            raise SwapError(f"No rollout of {self.name!r} to {verb} ({self.state_file} does not exist).")
        self.state = saved
        return saved

    def _abort_now(self, reason: str) -> None:
        stable, candidate = self.state["stable"], self.state["candidate"]
        self._roll_back(stable, candidate)
        where = self._quarantine(candidate)
        self._clear_state()
        raise self._fail(self._base(stable, candidate), f"rolled back: {reason}", quarantined=where)

    # ------------------------------------------------------------ loading

    def _connect_admins(self) -> None:
        for handle in self.plan.fleet.live:
            admin = self.admins[handle.url] = ReplicaAdmin(handle.url, timeout=min(5.0, self.options.timeout))
            try:
                admin.get(self.name)
            except RolloutUnsupported as exc:
                raise SwapError(f"Refusing to roll {self.name!r} out: {exc}") from None

    def _fleet_default(self) -> int | None:
        def default(handle: Any) -> int | None:
            available = [v.version for v in handle.status(self.name) if v.available]
            return max(available) if available else None

        defaults = set(self.plan.fleet.each("reading the served version", default))
        if len(defaults) > 1:
            raise SwapError(f"The replicas of {self.name!r} serve different versions {sorted(defaults)}; "
                            "wait until they agree (`tfship status`).")
        return defaults.pop() if defaults else None

    def _load_candidate(self, client: Any, stable: int, staged: Staged) -> dict[str, Any]:
        entries, index = self.plan._config_entry()
        labels = dict(entries[index].version_labels)
        labels.pop(CANARY, None)
        labels[STABLE] = stable
        self.emit(f"config: serve version {stable} labelled {STABLE!r}")
        self.plan._push(entries, index, {stable}, labels)
        self.plan._wait_label(client, STABLE, stable)
        self._set_everywhere("hold", 0.0, 0.0)  # unpinned requests now follow the stable label
        if not staged.live:
            staged.path = self.plan._publish(staged)
        self.emit(f"config: load version {staged.version} beside {stable}")
        self.plan._push(entries, index, {stable, staged.version}, labels)
        client.wait_until_available(self.name, staged.version, timeout=self.options.timeout)
        parity = self.plan._server_parity(client, staged)
        self.emit(f"version {staged.version} passed parity on {parity.get('replicas', 1)} replica(s); "
                  f"labelling it {CANARY!r}")
        self.plan._push(entries, index, {stable, staged.version}, {**labels, CANARY: staged.version})
        self.plan._wait_label(client, CANARY, staged.version)
        return parity

    # ------------------------------------------------------------ steps

    def _step_tag(self, index: int, step: Step) -> str:
        return f"{self.state['id']}:{index}:{step.name}"

    def _settings(self, index: int) -> dict[str, Any]:
        step = self.steps[index]
        return {"canary_percent": step.canary_percent, "shadow_percent": self.options.shadow_percent if step.shadow
                else 0.0, "step": self._step_tag(index, step), "lease_seconds": self.options.lease_seconds}

    def _set_everywhere(self, tag: str, canary: float, shadow: float) -> None:
        settings = {"canary_percent": canary, "shadow_percent": shadow, "step": tag,
                    "lease_seconds": self.options.lease_seconds}
        failures = []
        for url, admin in self._live_admins().items():
            try:
                state = admin.set(self.name, **settings)
                if state.get("step") != tag:
                    failures.append(f"replica {url} reports step {state.get('step')!r}, not {tag!r}")
            except ServingError as exc:
                failures.append(f"replica {url}: {exc.message.splitlines()[0]}")
        if failures:
            raise SwapError(f"setting step {tag!r} failed: " + "; ".join(failures))

    def _live_admins(self) -> dict[str, ReplicaAdmin]:
        return {url: a for url, a in self.admins.items() if url not in self.lost}

    def _run_steps(self, client: Any, base: dict[str, Any], start_at: int) -> SwapRecord:
        stable, candidate = self.state["stable"], self.state["candidate"]
        try:
            for index in range(start_at, len(self.steps)):
                step = self.steps[index]
                self.state.update(step=index, phase="running")
                _write_state(self.state_file, self.state)
                if step.promotes:
                    break
                failure = self._run_step(index, step)
                if failure is not None:
                    self._roll_back(stable, candidate)
                    where = self._quarantine(candidate)
                    self._clear_state()
                    raise self._fail(base, f"rolled back at step {step.name!r}: {failure}", quarantined=where,
                                     failure=failure)
        except KeyboardInterrupt:
            self._pause()
            raise
        return self._promote(client, base)

    def _run_step(self, index: int, step: Step) -> GateFailure | str | None:
        settings = self._settings(index)
        self._set_everywhere(settings["step"], settings["canary_percent"], settings["shadow_percent"])
        began = time.monotonic()
        self.emit(f"step {index + 1}/{len(self.steps)} {step.name}: candidate answers {step.canary_percent:g}%, "
                  f"shadow {settings['shadow_percent']:g}%, for {step.seconds:g} s")
        give_up = began + max(step.seconds * self.options.patience, step.seconds + 60)
        last: dict[str, dict[str, Any]] = {}
        while True:
            time.sleep(self.options.poll_seconds)  # the step's pace: one read of every replica per poll
            last = self._poll(settings)
            if len(last) < self._needed():
                lost = "; ".join(f"{u}: {why}" for u, why in self.lost.items())
                return (f"only {len(last)} of {len(self.admins)} replicas answer (lost {lost}); "
                        f"--min-replicas is {self._needed()}")
            for url, state in last.items():
                failure = judge(url, state, self.gates, step, self.stable_p99.get(url))
                if failure is not None:
                    self._record_step(index, step, last)
                    return failure
                stable_series = ((state.get("window") or {}).get("served") or {}).get(str(state.get("stable")), {})
                if stable_series.get("latency_samples", 0) >= self.gates.min_samples:
                    self.stable_p99[url] = stable_series["p99_ms"]
            elapsed = time.monotonic() - began
            short = {u: s["window"]["shadow"]["pairs"] for u, s in last.items()
                     if step.canary_percent == 0 and s["window"]["shadow"]["pairs"] < self.gates.min_pairs}
            if elapsed >= step.seconds and not short:
                self._record_step(index, step, last)
                return None
            if time.monotonic() > give_up:
                self._record_step(index, step, last)
                listed = ", ".join(f"{u}: {n}" for u, n in short.items())
                return GateFailure(next(iter(short)), f"min_pairs={self.gates.min_pairs}", (
                    f"too few shadow pairs after {elapsed:.0f} s ({listed}); more traffic, a higher "
                    "--shadow-percent or a lower min_pairs"))

    def _needed(self) -> int:
        return self.options.min_replicas if self.options.min_replicas is not None else len(self.admins)

    def _poll(self, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Renew every replica's lease and read its window; re-apply the step on a restarted one."""
        states: dict[str, dict[str, Any]] = {}
        for url, admin in self.admins.items():
            try:
                try:
                    state = admin.set(self.name, renew=True)
                except FailedPreconditionError:  # restarted: no rollout there any more
                    self.emit(f"replica {url} lost its rollout settings (restarted?); setting the step again")
                    state = admin.set(self.name, **settings)
                if state.get("step") != settings["step"]:
                    state = admin.set(self.name, **settings)
                states[url] = state
                if url in self.lost:
                    self.emit(f"replica {url} answers again")
                    self.lost.pop(url)
            except ServingError as exc:
                if url not in self.lost:
                    self.emit(f"replica {url} stopped answering: {exc.message.splitlines()[0]}")
                self.lost[url] = exc.message.splitlines()[0]
        return states

    def _record_step(self, index: int, step: Step, states: dict[str, dict[str, Any]]) -> None:
        self.history.append({"step": step.name, "replicas": {u: s.get("window") for u, s in states.items()}})

    # ------------------------------------------------------------ endings

    def _promote(self, client: Any, base: dict[str, Any]) -> SwapRecord:
        stable, candidate = self.state["stable"], self.state["candidate"]
        self.emit(f"promoting: label {STABLE!r} {stable} -> {candidate} on every replica")
        self.plan.fleet.live = [h for h in self.plan.fleet.live if h.url not in self.lost]
        entries, index = self.plan._config_entry()
        labels = {k: v for k, v in entries[index].version_labels.items() if k != CANARY}
        self.plan._push(entries, index, {stable, candidate}, {**labels, STABLE: candidate, CANARY: candidate})
        self.plan._wait_label(client, STABLE, candidate)
        # unpinned requests follow the moved label until the old version is gone, whatever the numbers
        self._set_everywhere("promoted", 0.0, 0.0)
        self.emit(f"unloading version {stable} once no request uses it")
        self.plan._push(entries, index, {candidate}, {**labels, STABLE: candidate})
        self._wait_unloaded(stable)
        self._clear_everywhere()
        retired = self.plan._retire(keep={candidate})
        self._clear_state()
        return self.plan.record(SwapRecord(**base, outcome="promoted", parity=self.state.get("parity"),
                                           retired=retired, rollout=self._summary("promoted")))

    def _roll_back(self, stable: int, candidate: int) -> None:
        """Candidate out of every answering replica: no more candidate answers first, then unload it."""
        self.emit(f"rolling back to version {stable} on every replica")
        for admin in self._live_admins().values():
            with contextlib.suppress(ServingError):
                admin.set(self.name, canary_percent=0.0, shadow_percent=0.0, step="rollback",
                          lease_seconds=self.options.lease_seconds)
        self.plan.fleet.live = [h for h in self.plan.fleet.live if h.url not in self.lost]
        entries, index = self.plan._config_entry()
        labels = {k: v for k, v in entries[index].version_labels.items() if k != CANARY}
        labels[STABLE] = stable
        self.plan._push(entries, index, {stable}, labels)
        self._wait_unloaded(candidate)
        self._clear_everywhere()

    def _wait_unloaded(self, version: int) -> None:
        from tfship.deploy.fleet import _wait_replica

        self.plan.fleet.each(f"unloading version {version}", lambda h: _wait_replica(
            h, lambda r: all(not (v.version == version and v.available) for v in r.status(self.name)),
            f"version {version} to leave", self.options.timeout))

    def _clear_everywhere(self) -> None:
        for admin in self._live_admins().values():
            with contextlib.suppress(ServingError):
                admin.set(self.name, clear=True)

    def _quarantine(self, candidate: int) -> str | None:
        live = self.plan.live_versions()
        if candidate not in live:
            return None
        return self.plan._set_aside(Staged(candidate, live[candidate], live=True))

    def _pause(self) -> None:
        self.emit("interrupted: every replica back to stable only; resume with --resume or roll back with --abort")
        with contextlib.suppress(Exception):
            self._set_everywhere("paused", 0.0, 0.0)
        self.state["phase"] = "paused"
        _write_state(self.state_file, self.state)

    def _clear_state(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def _base(self, stable: int, candidate: int) -> dict[str, Any]:
        return {"model": self.name, "action": "rollout", "from_version": stable, "to_version": candidate,
                "label": STABLE}

    def _summary(self, result: str, failure: GateFailure | str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"result": result, "steps": self.options.steps, "gates": self.gates.text(),
                               "shadow_percent": self.options.shadow_percent,
                               "step_reached": self.steps[int(self.state.get("step", 0))].name,
                               "lost_replicas": dict(self.lost), "windows": self.history}
        if isinstance(failure, GateFailure):
            out["failure"] = asdict(failure)
        elif failure is not None:
            out["failure"] = {"detail": failure}
        return out

    def _fail(self, base: dict[str, Any], reason: str, *, quarantined: str | None = None,
              failure: GateFailure | str | None = None) -> SwapError:
        record = SwapRecord(**base, outcome="failed", reason=reason, quarantined=quarantined,
                            parity=self.state.get("parity"), rollout=self._summary("rolled_back", failure))
        error = self.plan.fail(record)
        error.args = (f"Rollout of {self.name!r} {self.state.get('stable')} -> {self.state.get('candidate')} "
                      f"{reason}",)
        return error
