"""The server bench's targets (issues 3 and 14), judged PASS/MISS on one run's cells and paired rounds.
"""

from __future__ import annotations

import numpy as np
import peers
from tables import Cell


def _ratio_check(label: str, goal: float, pairs: list[tuple[float, float]], fallback: tuple[float, float] | None
                 ) -> tuple[str, bool, str] | None:
    """``label`` met when (numerator / denominator) >= goal: the median over the paired rounds
    when there are any (robust to the box's drift between cells), else the table's cells."""
    if pairs:
        ratios = sorted(a / b for a, b in pairs)
        median = float(np.median(ratios))
        rounds = ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in pairs)
        return (label, median >= goal, f"median {median:.2f}x over {len(pairs)} alternating rounds ({rounds})")
    if fallback and fallback[0] and fallback[1]:
        a, b = fallback
        return (label, a >= goal * b, f"{a:,.0f} vs {b:,.0f} rows/s ({a / b:.2f}x)")
    return None


TFSHIP_TARGETS = ("grpc", "grpc+b", "rest", "rest+b")
BASE_TARGETS = tuple(f"{t}@base" for t in TFSHIP_TARGETS)


def best_target(cells: list[Cell], model: str, targets: tuple[str, ...]) -> str | None:
    """The target with the most rows/s at ``model`` b1 c16 (the many-small-clients cell)."""
    found = [c for c in cells if c.model == model and c.batch == 1 and c.concurrency == 16 and c.target in targets]
    return max(found, key=lambda c: c.rows_per_s).target if found else None


def _worst_ratio(cells: list[Cell], numerators: tuple[str, ...], denominators: tuple[str, ...]
                 ) -> tuple[float, tuple[str, int, int], str, str] | None:
    """Over the cells (model, batch, concurrency) measured on both sides: the lowest ratio of the best
    ``numerators`` target to the best ``denominators`` target, with where it was and which targets."""
    best: dict[tuple[tuple[str, int, int], bool], Cell] = {}
    for c in cells:
        side = c.target in numerators
        if side or c.target in denominators:
            key = ((c.model, c.batch, c.concurrency), side)
            if key not in best or c.rows_per_s > best[key].rows_per_s:
                best[key] = c
    worst = None
    for (where, side), num in best.items():
        den = best.get((where, False))
        if side and den is not None and den.rows_per_s > 0:
            ratio = num.rows_per_s / den.rows_per_s
            if worst is None or ratio < worst[0]:
                worst = (ratio, where, num.target, den.target)
    return worst


def _every_cell_check(label: str, goal: float, cells: list[Cell], numerators: tuple[str, ...],
                      denominators: tuple[str, ...]) -> tuple[str, bool, str] | None:
    worst = _worst_ratio(cells, numerators, denominators)
    if worst is None:
        return None
    ratio, (model, batch, conc), num, den = worst
    return (label, ratio >= goal, f"worst {ratio:.2f}x ({model} b{batch} c{conc}: {num} vs {den})")


def paired_cell_ratios(paired_cells: dict[str, dict[str, list[float]]], numerator: str, denominator: str
                       ) -> dict[str, float]:
    """Per cell measured with both targets: the median over rounds of numerator / denominator."""
    out = {}
    for where, rates in paired_cells.items():
        num, den = rates.get(numerator), rates.get(denominator)
        if num and den:
            out[where] = float(np.median([a / b for a, b in zip(num, den, strict=True) if b > 0]))
    return out


def _paired_every_cell_check(label: str, goal: float, paired_cells: dict[str, dict[str, list[float]]],
                             pairs: tuple[tuple[str, str], ...]) -> tuple[str, bool, str] | None:
    worst: tuple[float, str, str, str] | None = None
    for numerator, denominator in pairs:
        for where, ratio in paired_cell_ratios(paired_cells, numerator, denominator).items():
            if worst is None or ratio < worst[0]:
                worst = (ratio, where, numerator, denominator)
    if worst is None:
        return None
    ratio, where, num, den = worst
    rounds = len(next(iter(paired_cells.values()))[num])
    return (label, ratio >= goal, f"worst {ratio:.2f}x ({where}: {num} vs {den}; median of {rounds} paired rounds)")


def checks(cells: list[Cell], paired: dict[str, list[tuple[float, float]]] | None = None,
           paired_cells: dict[str, dict[str, list[float]]] | None = None) -> list[tuple[str, bool, str]]:
    """The issues' targets, evaluated on this run (``paired``: see :func:`paired_rounds`;
    ``paired_cells``: see :func:`paired.cell_rounds`, which then judge the every-cell ratios)."""
    paired = paired or {}
    paired_cells = paired_cells or {}
    index = {(c.model, c.target, c.batch, c.concurrency): c.rows_per_s for c in cells}
    models = sorted({c.model for c in cells})
    candidates: list[tuple[str, bool, str] | None] = [
        # one client: latency-bound (the 3.2 MB transfer cannot overlap the model run); 16
        # clients: throughput, both sides saturating the cores
        _ratio_check(f"cnn b1024 c{conc} gRPC >= 0.8x in-process ({what})", 0.8,
                     paired.get(f"ceiling_c{conc}", []),
                     (index.get(("cnn", "grpc", 1024, conc), 0), index.get(("cnn", "in-process", 1024, conc), 0)))
        for conc, what in ((1, "one request at a time"), (16, "throughput"))
    ]
    candidates.append(
        _ratio_check("cnn c16 b1 batching on >= 2x off (gRPC)", 2.0, paired.get("batching_cnn", []),
                     (index.get(("cnn", "grpc+b", 1, 16), 0), index.get(("cnn", "grpc", 1, 16), 0))))
    # issue 14 (and 19: judged on paired cells when measured)
    for protocol in ("grpc", "rest"):
        label = f"batching never loses: {protocol}+b >= 0.95x {protocol}, every cell"
        candidates.append(
            _paired_every_cell_check(label + " (paired)", 0.95, paired_cells, ((f"{protocol}+b", protocol),))
            if paired_cells else _every_cell_check(label, 0.95, cells, (f"{protocol}+b",), (protocol,)))
    # issue 19: no regression against the thread-per-request server (--baseline-rev dda86f7)
    candidates.append(_paired_every_cell_check(
        "no regression: every tfship target >= 0.95x its @base counterpart, every cell (paired)", 0.95,
        paired_cells, tuple((t, f"{t}@base") for t in TFSHIP_TARGETS)))
    for model in models:
        candidates.append(_ratio_check(
            f"{model} c16 b1 batching on >= 1.5x off (gRPC)", 1.5, paired.get(f"batching_{model}", []),
            (index.get((model, "grpc+b", 1, 16), 0), index.get((model, "grpc", 1, 16), 0))))
    for model in models:
        new, base = best_target(cells, model, TFSHIP_TARGETS), best_target(cells, model, BASE_TARGETS)
        candidates.append(_ratio_check(
            f"{model} c16 b1 best tfship variant >= 1.5x best @base variant", 1.5, paired.get(f"base_{model}", []),
            (index.get((model, new, 1, 16), 0), index.get((model, base, 1, 16), 0)) if new and base else None))
    # issue 19: the Open Inference Protocol front ends
    worst_v2 = _worst_ratio(cells, ("v2-grpc",), ("grpc",))
    where = "{} b{} c{}".format(*worst_v2[1]) if worst_v2 else "-"
    candidates += [
        _every_cell_check("V2 gRPC >= 0.9x TF Serving gRPC, every cell (table)", 0.9, cells, ("v2-grpc",), ("grpc",)),
        _ratio_check(f"V2 gRPC >= 0.9x TF Serving gRPC at the table's worst cell ({where}), paired", 0.9,
                     paired.get("v2_grpc_worst", []), None),
        *(_ratio_check(f"{model} b1024 c{conc} V2 REST binary >= 2x V2 REST JSON", 2.0,
                       paired.get(f"v2_binary_{model}_c{conc}", []),
                       (index.get((model, "v2-rest-bin", 1024, conc), 0), index.get((model, "v2-rest", 1024, conc), 0)))
          for model in models for conc in sorted({c.concurrency for c in cells})),
    ]
    candidates += [
        _every_cell_check("gRPC >= 0.6x in-process, every cell", 0.6, cells, ("grpc",), ("in-process",)),
        _every_cell_check("--peers: best tfship variant >= 2x best peer, every cell", 2.0, cells, TFSHIP_TARGETS,
                          peers.PEER_TARGETS),
    ]
    idle = paired.get("idle_p99", [])
    if idle:
        ratios = sorted(with_idle / without for with_idle, without in idle)
        median = float(np.median(ratios))
        rounds = ", ".join(f"{a:.1f}/{b:.1f} ms" for a, b in idle)
        candidates.append(("rest mlp c16 b1 p99 with idle keep-alive connections <= 1.5x without", median <= 1.5,
                           f"median {median:.2f}x over {len(idle)} alternating rounds (with/without: {rounds})"))
    out = [check for check in candidates if check is not None]
    floor_cells = {(c.model, c.batch, c.concurrency): c.rows_per_s for c in cells if c.target == "fastapi"}
    worst_floor = None
    for c in cells:
        if c.target not in TFSHIP_TARGETS or (c.model, c.batch, c.concurrency) not in floor_cells:
            continue
        ratio = c.rows_per_s / max(floor_cells[(c.model, c.batch, c.concurrency)], 1e-9)
        if worst_floor is None or ratio < worst_floor[0]:
            worst_floor = (ratio, c)
    if worst_floor is not None:
        ratio, c = worst_floor
        out.append(("every server config >= 10x FastAPI+model.predict", ratio >= 10,
                    f"worst {ratio:.1f}x ({c.model} {c.target} b{c.batch} c{c.concurrency})"))
    return out
