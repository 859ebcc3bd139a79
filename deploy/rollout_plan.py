"""What a rollout goes through and what it must pass: ``--steps`` and ``--gate``, parsed and judged.

Steps: ``shadow:5m,5%:5m,25%:5m,100%``. ``shadow`` runs a share of the unpinned requests on the
candidate off the callers' path; ``N%`` lets the candidate answer N % of them; a duration
(``90s``, ``5m``, ``1h``, plain seconds) holds the step; a last ``100%`` without one promotes.

Gates (each judged on every replica, on what it saw during the step):

* ``agreement>=0.999`` shadow pairs within the candidate's export tolerances, once a replica has
  ``min_pairs``; a shadow step does not end before every replica has them;
* ``error_rate<=0.001`` the candidate's failed calls (shadow runs and answers) over its calls;
* ``p99<=1.5x`` the candidate's p99 latency over stable's, on real answers (canary steps), once
  both have ``min_samples`` answers; at 100 % stable's p99 from the previous step is the baseline;
* ``min_pairs=500``, ``min_samples=300``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from tfship.errors import ConfigError

__all__ = ["Step", "Gates", "GateFailure", "parse_steps", "parse_gates", "judge", "DEFAULT_STEPS", "DEFAULT_GATES"]

DEFAULT_STEPS = "shadow:5m,5%:5m,25%:5m,100%"
DEFAULT_GATES = "agreement>=0.999,error_rate<=0.001,p99<=1.5x,min_pairs=500,min_samples=300"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")


@dataclass(frozen=True)
class Step:
    """One step: the candidate's share of answers and whether it also shadows; how long it holds."""

    name: str
    canary_percent: float
    seconds: float
    shadow: bool = True

    @property
    def promotes(self) -> bool:
        return self.canary_percent >= 100.0 and self.seconds == 0


def _seconds(text: str, step: str) -> float:
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ConfigError(f"Step {step!r}: duration {text!r} is not like 90s, 5m, 1h or 500ms.")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def parse_steps(text: str) -> list[Step]:
    """``"shadow:5m,5%:5m,25%:5m,100%"`` -> steps; raises ConfigError naming the bad part."""
    steps: list[Step] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        what, _, duration = part.partition(":")
        seconds = _seconds(duration, part) if duration else 0.0
        if what == "shadow":
            steps.append(Step("shadow", 0.0, seconds))
        elif what.endswith("%"):
            try:
                percent = float(what[:-1])
            except ValueError:
                raise ConfigError(f"Step {part!r}: {what!r} is not a percentage like 5%.") from None
            if not 0 < percent <= 100:
                raise ConfigError(f"Step {part!r}: the candidate's share must be above 0% and at most 100%.")
            steps.append(Step(what, percent, seconds))
        else:
            raise ConfigError(f"Step {part!r}: expected shadow:DURATION or N%:DURATION (e.g. 5%:5m).")
    if not steps:
        raise ConfigError("--steps is empty; e.g. shadow:5m,5%:5m,25%:5m,100%")
    for step in steps[:-1]:
        if step.seconds <= 0:
            raise ConfigError(f"Step {step.name!r} needs a duration (only the last step may be a bare 100%).")
    last = steps[-1]
    if last.canary_percent < 100:
        raise ConfigError(f"The last step must be 100% (the promotion), not {last.name!r}.")
    return steps


@dataclass(frozen=True)
class Gates:
    agreement: float = 0.999
    error_rate: float = 0.001
    p99_ratio: float = 1.5
    min_pairs: int = 500
    min_samples: int = 300

    def text(self) -> str:
        return (f"agreement>={self.agreement:g},error_rate<={self.error_rate:g},p99<={self.p99_ratio:g}x,"
                f"min_pairs={self.min_pairs},min_samples={self.min_samples}")


_GATE = re.compile(r"(agreement)\s*>=\s*([\d.]+)|(error_rate)\s*<=\s*([\d.]+)|(p99)\s*<=\s*([\d.]+)x"
                   r"|(min_pairs|min_samples)\s*=\s*(\d+)")


def parse_gates(text: str) -> Gates:
    """``"agreement>=0.999,error_rate<=0.001,p99<=1.5x,min_pairs=500"``; keys left out keep defaults."""
    values: dict[str, Any] = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        m = _GATE.fullmatch(part)
        if m is None:
            raise ConfigError(f"Gate {part!r} is not one of agreement>=F, error_rate<=F, p99<=Fx, min_pairs=N, "
                              "min_samples=N.")
        key, value = [g for g in m.groups() if g is not None]
        values[{"p99": "p99_ratio"}.get(key, key)] = int(value) if key.startswith("min_") else float(value)
    gates = replace(Gates(), **values)
    if not 0 <= gates.agreement <= 1 or not 0 <= gates.error_rate <= 1 or gates.p99_ratio <= 0:
        raise ConfigError(f"Gate values out of range: {gates.text()}")
    return gates


@dataclass(frozen=True)
class GateFailure:
    """Which gate failed where, with the numbers."""

    replica: str
    gate: str
    detail: str

    def __str__(self) -> str:
        return f"gate {self.gate} failed on replica {self.replica}: {self.detail}"


def judge(replica: str, state: dict[str, Any], gates: Gates, step: Step,
          stable_p99_ms: float | None = None) -> GateFailure | None:
    """The first gate ``state`` (a replica's GetRollout answer) fails, or ``None``."""
    window = state.get("window") or {}
    shadow = window.get("shadow") or {}
    served = window.get("served") or {}
    candidate = served.get(str(state.get("candidate")), {})
    stable = served.get(str(state.get("stable")), {})
    pairs, agreeing = shadow.get("pairs", 0), shadow.get("agreeing", 0)
    if pairs >= gates.min_pairs and pairs and agreeing / pairs < gates.agreement:
        return GateFailure(replica, f"agreement>={gates.agreement:g}", (
            f"{agreeing} of {pairs} shadow pairs agree ({agreeing / pairs:.4f}); worst abs error "
            f"{shadow.get('worst_abs_error')} on output {shadow.get('worst_output')!r}"))
    calls = shadow.get("candidate_runs", 0) + candidate.get("count", 0)
    errors = shadow.get("candidate_errors", 0) + candidate.get("errors", 0)
    if errors and (calls >= gates.min_pairs or errors > gates.error_rate * max(calls, gates.min_pairs)) \
            and errors / calls > gates.error_rate:
        return GateFailure(replica, f"error_rate<={gates.error_rate:g}",
                           f"{errors} of {calls} candidate calls failed ({errors / calls:.4f})")
    baseline = stable.get("p99_ms") if stable.get("latency_samples", 0) >= gates.min_samples else stable_p99_ms
    if step.canary_percent > 0 and candidate.get("latency_samples", 0) >= gates.min_samples and baseline:
        ratio = candidate["p99_ms"] / baseline
        if ratio > gates.p99_ratio:
            return GateFailure(replica, f"p99<={gates.p99_ratio:g}x", (
                f"candidate p99 {candidate['p99_ms']:.2f} ms vs stable {baseline:.2f} ms = {ratio:.2f}x "
                f"({candidate['latency_samples']} candidate answers)"))
    return None


