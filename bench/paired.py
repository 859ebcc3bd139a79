"""Paired rounds: two setups measured back to back, alternating which goes first, so the ratio
targets are judged on medians of pairs instead of cells measured minutes apart.
"""

from __future__ import annotations

from collections.abc import Callable

from idle_connections import IdleConnections


def paired_rounds(rounds: int, first: Callable[[], float], second: Callable[[], float]
                  ) -> list[tuple[float, float]]:
    """``rounds`` pairs of (first(), second()) rows/s, alternating which runs first.

    The two ratio targets compare cells measured minutes apart in the table, and this shared box
    drifts by tens of percent over minutes (the in-process ceiling at CNN batch 1024 read 37k,
    65k and 83k rows/s in three runs); measuring the two sides back to back, several times, and
    taking the median ratio keeps the drift out of the verdict.
    """
    pairs = []
    for i in range(rounds):
        if i % 2 == 0:
            a = first()
            b = second()
        else:
            b = second()
            a = first()
        pairs.append((a, b))
    return pairs


#: (numerator, denominator) targets ``--paired-cells`` compares in every cell: this server vs the
#: ``--baseline-rev`` one (no regression), and batching on vs off (batching never loses)
CELL_PAIRS = (
    ("grpc", "grpc@base"), ("grpc+b", "grpc+b@base"), ("rest", "rest@base"), ("rest+b", "rest+b@base"),
    ("grpc+b", "grpc"), ("rest+b", "rest"),
)


def cell_rounds(rounds: int, targets: list[str], rate: Callable[[str], float]) -> dict[str, list[float]]:
    """``rounds`` rounds of ``rate(target)`` for every target of one cell, back to back, the order
    reversed every other round: round i of two targets is a pair measured seconds apart."""
    rates: dict[str, list[float]] = {t: [] for t in targets}
    for i in range(rounds):
        for target in targets if i % 2 == 0 else targets[::-1]:
            rates[target].append(rate(target))
    return rates


def idle_rounds(rounds: int, count: int, port: int, model: str, p99: Callable[[], float]) -> list[tuple[float, float]]:
    """``rounds`` pairs of (p99 with ``count`` idle keep-alive connections open, p99 without), alternating."""

    def with_idle() -> float:
        idle = IdleConnections(port, f"/v1/models/{model}", count)
        try:
            result = p99()
            still = idle.still_open()
        finally:
            idle.close()
        print(f"    {still} of {count} idle connections still open after the cell", flush=True)
        return result

    return paired_rounds(rounds, with_idle, p99)
