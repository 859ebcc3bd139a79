"""The availability-preserving load/unload policy (TF Serving compat spec §3.2), as a pure function.

One action at a time per model:

1. If a loaded version is no longer aspired, unload the lowest such version - unless it is the only
   AVAILABLE one while some aspired version is not AVAILABLE yet (new version first, then the old
   one goes; if the new one failed, the old one keeps serving). With nothing aspired, unload anyway.
2. Otherwise load the highest aspired version that is neither loaded nor failed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["State", "Action", "next_action"]


class State(IntEnum):
    """``ModelVersionStatus.State`` numbers (apis/get_model_status.proto)."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class Action:
    kind: str  # "load" | "unload"
    version: int


def next_action(
    aspired: Collection[int], states: Mapping[int, State], failed: Collection[int]
) -> Action | None:
    """The next action for one model, or ``None`` when it is settled.

    >>> next_action({124}, {123: State.AVAILABLE}, set())
    Action(kind='load', version=124)
    >>> next_action({124}, {123: State.AVAILABLE, 124: State.AVAILABLE}, set())
    Action(kind='unload', version=123)
    >>> next_action({124}, {123: State.AVAILABLE, 124: State.END}, {124}) is None
    True
    """
    loaded = [v for v, s in states.items() if s in (State.LOADING, State.AVAILABLE)]
    available = [v for v in loaded if states[v] == State.AVAILABLE]
    unaspired = sorted(v for v in loaded if v not in aspired)
    if unaspired:
        candidate = unaspired[0]
        pending = any(states.get(v) != State.AVAILABLE for v in aspired)
        keep = bool(aspired) and available == [candidate] and pending
        if not keep:
            return Action("unload", candidate)
    to_load = [v for v in aspired if v not in loaded and v not in failed]
    if to_load:
        return Action("load", max(to_load))
    return None
