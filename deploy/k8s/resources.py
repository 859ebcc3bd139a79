"""CPU and memory: Kubernetes quantities, and TensorFlow's thread pools sized from the CPU limit.

TensorFlow sizes its thread pools from the cores it *sees*, which in a container is the node's
core count, not the pod's CPU limit: on a 64-core node a 2-CPU pod would start 64 intra-op threads
that the CFS quota then throttles (the "TF thread pools sized for the node" trap). tfship passes
``--tensorflow_intra_op_parallelism`` / ``--tensorflow_inter_op_parallelism`` derived from the
limit instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tfship.errors import ConfigError

__all__ = ["Resources", "ThreadFlags", "cpu_cores", "memory_bytes", "thread_flags"]

_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def cpu_cores(quantity: str) -> float:
    """``"1500m"`` -> 1.5, ``"2"`` -> 2.0. Raises ConfigError naming the accepted forms."""
    match = _CPU.match(quantity.strip())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"CPU quantity {quantity!r} is not valid: use cores ('2', '0.5') or millicores ('500m')."
        )
    value = float(match.group(1))
    return value / 1000 if match.group(2) else value


def memory_bytes(quantity: str) -> int:
    """``"2Gi"`` -> 2147483648. Raises ConfigError naming the accepted suffixes."""
    match = _MEMORY.match(quantity.strip())
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"Memory quantity {quantity!r} is not valid: use e.g. '512Mi', '2Gi' or a byte count."
        )
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


@dataclass(frozen=True)
class ThreadFlags:
    """TF Serving's session thread pools for one pod."""

    intra_op: int
    inter_op: int

    def args(self) -> list[str]:
        return [f"--tensorflow_intra_op_parallelism={self.intra_op}",
                f"--tensorflow_inter_op_parallelism={self.inter_op}"]


def thread_flags(cpu_limit: str) -> ThreadFlags:
    """Thread pools for a CPU limit: one intra-op thread per whole core of the limit (at least 1).

    Rounded down: a 1.5-CPU limit gets 1 compute thread, leaving the half core to the gRPC/HTTP
    threads instead of having two compute threads throttled by the CFS quota. Inter-op
    parallelism (independent ops run at once) stays small, as TensorFlow's performance guide
    advises for a single socket: 1 up to 4 cores, 2 above.
    """
    cores = max(1, math.floor(cpu_cores(cpu_limit)))
    return ThreadFlags(intra_op=cores, inter_op=1 if cores <= 4 else 2)


@dataclass(frozen=True)
class Resources:
    """Requests and limits of the server container (Kubernetes quantity strings)."""

    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    cpu_request: str | None = None     # default: the limit (Guaranteed QoS when both are equal)
    memory_request: str | None = None  # default: the limit

    def __post_init__(self) -> None:
        if cpu_cores(self.cpu_request or self.cpu_limit) > cpu_cores(self.cpu_limit):
            raise ConfigError(f"--cpu-request {self.cpu_request} is above --cpu {self.cpu_limit}: "
                              "a request cannot exceed its limit.")
        if memory_bytes(self.memory_request or self.memory_limit) > memory_bytes(self.memory_limit):
            raise ConfigError(f"--memory-request {self.memory_request} is above --memory "
                              f"{self.memory_limit}: a request cannot exceed its limit.")

    def spec(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` field."""
        return {
            "requests": {"cpu": self.cpu_request or self.cpu_limit,
                         "memory": self.memory_request or self.memory_limit},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }
