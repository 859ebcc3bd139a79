"""One measured cell of the server bench, and how cells are printed: a line as each is measured, a
Markdown table at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Cell:
    model: str
    target: str
    batch: int
    concurrency: int
    calls: int
    errors: int
    seconds: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu: float | None = None  # client processes' CPU time / wall time, in cores
    server_cpu: float | None = None  # the server process's CPU time / wall time, in cores


def summarize(model: str, target: str, batch: int, concurrency: int,
              latencies: list[float], errors: int, elapsed: float, calls: int | None = None) -> Cell:
    """A cell from per-call latencies (s); ``calls`` = successful calls, default len(latencies)."""
    calls = len(latencies) if calls is None else calls
    lat = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return Cell(model, target, batch, concurrency, calls, errors, round(elapsed, 2),
                round(calls * batch / elapsed, 1),
                round(float(np.percentile(lat, 50)), 3), round(float(np.percentile(lat, 99)), 3))


def print_cell(cell: Cell) -> None:
    print(f"  {cell.model:4} {cell.target:10} b{cell.batch:<5} c{cell.concurrency:<3} "
          f"{cell.rows_per_s:>11,.0f} rows/s  p50 {cell.p50_ms:8.2f} ms  p99 {cell.p99_ms:8.2f} ms"
          + (f"  client cpu {cell.client_cpu:.2f}" if cell.client_cpu is not None else "")
          + (f"  server cpu {cell.server_cpu:.2f}" if cell.server_cpu is not None else "")
          + (f"  errors {cell.errors}" if cell.errors else ""), flush=True)


def table(cells: list[Cell], targets: list[str]) -> str:
    """Markdown table: one row per model/batch/concurrency, rows/s (p50 ms) per target."""
    index = {(c.model, c.target, c.batch, c.concurrency): c for c in cells}
    keys = sorted({(c.model, c.batch, c.concurrency) for c in cells})
    lines = ["| model | batch | conc | " + " | ".join(targets) + " |",
             "|---|---:|---:|" + "---:|" * len(targets)]
    for model, batch, conc in keys:
        row = []
        for target in targets:
            cell = index.get((model, target, batch, conc))
            row.append("-" if cell is None else f"{cell.rows_per_s:,.0f} ({cell.p50_ms:.1f} ms)")
        lines.append(f"| {model} | {batch} | {conc} | " + " | ".join(row) + " |")
    return "\n".join(lines)
