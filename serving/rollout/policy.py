"""Rollout settings per model and the routing of unpinned requests.

The table is copy-on-write: a change replaces the whole dict in one assignment, so a request
reads one consistent :class:`RolloutSettings` (weights and shadow rate change together, per
replica, atomically) without taking a lock on the hot path.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from tfship.errors import InvalidArgumentError

__all__ = ["RolloutSettings", "RoutingPolicy", "STABLE", "CANARY"]

#: TF Serving's own label names: the version answering by default, and the candidate.
STABLE = "stable"
CANARY = "canary"


@dataclass(frozen=True)
class RolloutSettings:
    """One model's rollout on one replica.

    ``canary_percent``: share of unpinned requests the ``canary`` version answers (0-100).
    ``shadow_percent``: share of the unpinned requests ``stable`` answered that are also run on
    ``canary`` off the caller's path and compared (0-100). ``step``: a free-form name the rollout
    tool gives the step (reported back, so it can verify every replica is on it).
    """

    canary_percent: float = 0.0
    shadow_percent: float = 0.0
    step: str = ""
    generation: int = 0
    since: float = field(default_factory=time.time)
    #: seconds the settings hold without a renewal; then the replica serves ``stable`` only (a
    #: rollout tool that died cannot leave traffic on the candidate). 0: no lease.
    lease_seconds: float = 0.0
    expires: float = math.inf  # time.monotonic() deadline, from lease_seconds

    def renewed(self) -> RolloutSettings:
        return replace(self, expires=time.monotonic() + self.lease_seconds if self.lease_seconds else math.inf)

    @property
    def expired(self) -> bool:
        return self.expires < time.monotonic()

    def __post_init__(self) -> None:
        for name in ("canary_percent", "shadow_percent"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 100.0:
                raise InvalidArgumentError(f"{name} must be a number from 0 to 100, not {value!r}.")
        if not isinstance(self.step, str) or len(self.step) > 200:
            raise InvalidArgumentError("step must be a string of at most 200 characters.")
        lease = self.lease_seconds
        if not isinstance(lease, (int, float)) or isinstance(lease, bool) or not 0.0 <= lease <= 86400.0:
            raise InvalidArgumentError(f"lease_seconds must be a number from 0 to 86400, not {lease!r}.")


class RoutingPolicy:
    """Which version answers an unpinned request of a model under rollout.

    ``labels(model)`` returns the model's current version labels (the manager's). A model without
    settings is not under rollout: :meth:`route` returns ``None`` and the server's default applies
    (the highest AVAILABLE version, as TF Serving). Under rollout, unpinned requests go to
    ``stable``, or with probability ``canary_percent`` to ``canary``.
    """

    def __init__(self, labels: Callable[[str], Mapping[str, int]], rng: random.Random | None = None) -> None:
        self._labels = labels
        self._table: dict[str, RolloutSettings] = {}
        self._write = threading.Lock()
        self._rng = rng or random.Random()

    def get(self, model: str) -> RolloutSettings | None:
        return self._table.get(model)

    def models(self) -> dict[str, RolloutSettings]:
        return dict(self._table)

    def set(self, model: str, settings: RolloutSettings | None) -> None:
        """Install (or with ``None`` clear) ``model``'s settings in one step."""
        with self._write:
            table = dict(self._table)
            if settings is None:
                table.pop(model, None)
            else:
                table[model] = settings
            self._table = table

    def versions(self, model: str) -> tuple[int | None, int | None]:
        """``(stable, canary)`` version numbers from the labels (``None`` when a label is absent)."""
        labels = self._labels(model)
        return labels.get(STABLE), labels.get(CANARY)

    def route(self, model: str) -> int | None:
        settings = self._table.get(model)
        if settings is None:
            return None
        stable, canary = self.versions(model)
        if stable is None:
            return None
        if canary is not None and canary != stable and settings.canary_percent > 0.0 \
                and self._rng.random() * 100.0 < settings.canary_percent and not settings.expired:
            return canary
        return stable

    def sample(self, percent: float) -> bool:
        """True for ``percent`` % of calls (the shadow sampling)."""
        return percent > 0.0 and (percent >= 100.0 or self._rng.random() * 100.0 < percent)
