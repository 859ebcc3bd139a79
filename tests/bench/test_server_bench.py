"""The server bench's verdicts and command line, and bench/idle_connections.py, without running a benchmark.

The bench is a script directory, not a package: its modules import each other by name, so the
directory goes on sys.path as it does when the bench runs.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import server_bench_args  # noqa: E402
from idle_connections import IdleConnections  # noqa: E402
from tables import Cell  # noqa: E402
from verdicts import checks  # noqa: E402


def cell(target: str, rows_per_s: float, model: str = "mlp", batch: int = 1, conc: int = 16) -> Cell:
    return Cell(model, target, batch, conc, calls=100, errors=0, seconds=1.0, rows_per_s=rows_per_s,
                p50_ms=1.0, p99_ms=2.0)


def verdicts(cells: list[Cell], paired: dict | None = None) -> dict[str, tuple[bool, str]]:
    return {label: (ok, detail) for label, ok, detail in checks(cells, paired)}


def test_batching_never_loses_names_the_worst_cell() -> None:
    cells = [cell("grpc", 1000), cell("grpc+b", 990), cell("grpc", 100, batch=32), cell("grpc+b", 90, batch=32)]
    ok, detail = verdicts(cells)["batching never loses: grpc+b >= 0.95x grpc, every cell"]
    assert not ok
    assert "0.90x (mlp b32 c16" in detail


def test_paired_cells_judge_every_cell_on_median_per_round_ratios() -> None:
    from paired import cell_rounds

    order: list[str] = []
    rates = iter([100, 98, 200, 210, 80, 200, 100, 100, 100, 100, 100, 100])

    def rate(target: str) -> float:
        order.append(target)
        return next(rates)

    # the table's single cells say batching loses at b1 (0.5x); the pairs measured seconds apart decide
    table = [cell("grpc", 1000), cell("grpc+b", 500), cell("grpc@base", 1000)]
    paired_cells = {"mlp b1 c16": cell_rounds(3, ["grpc", "grpc+b"], rate),
                    "mlp b32 c16": {"grpc": [100.0, 100.0, 100.0], "grpc@base": [100.0, 90.0, 200.0]}}
    assert order == ["grpc", "grpc+b", "grpc+b", "grpc", "grpc", "grpc+b"]  # alternating order
    assert paired_cells["mlp b1 c16"] == {"grpc": [100, 210, 80], "grpc+b": [98, 200, 200]}
    found = {label: (ok, detail) for label, ok, detail in checks(table, {}, paired_cells)}
    ok, detail = found["batching never loses: grpc+b >= 0.95x grpc, every cell (paired)"]
    assert ok and "worst 0.98x (mlp b1 c16: grpc+b vs grpc; median of 3 paired rounds)" in detail
    ok, detail = found["no regression: every tfship target >= 0.95x its @base counterpart, every cell (paired)"]
    assert ok and "1.00x (mlp b32 c16: grpc vs grpc@base" in detail


def test_peers_are_compared_best_against_best_in_every_cell() -> None:
    cells = [cell("grpc", 1000), cell("rest+b", 2500), cell("bentoml", 400), cell("mlserver+b", 1200),
             cell("grpc", 900, batch=32), cell("mlserver-grpc", 400, batch=32)]
    ok, detail = verdicts(cells)["--peers: best tfship variant >= 2x best peer, every cell"]
    assert ok
    assert "worst 2.08x (mlp b1 c16: rest+b vs mlserver+b)" in detail
    cells.append(cell("bentoml+b", 500, batch=32))
    assert not verdicts(cells)["--peers: best tfship variant >= 2x best peer, every cell"][0]


def test_paired_rounds_decide_over_the_table() -> None:
    cells = [cell("grpc", 1000), cell("grpc+b", 1000), cell("rest", 1200), cell("grpc@base", 700)]
    paired = {"batching_mlp": [(1600.0, 1000.0), (1400.0, 1000.0), (1550.0, 1000.0)],
              "base_mlp": [(1000.0, 700.0)] * 3}
    result = verdicts(cells, paired)
    assert result["mlp c16 b1 batching on >= 1.5x off (gRPC)"][0]  # median 1.55x, the table says 1.0x
    assert not result["mlp c16 b1 best tfship variant >= 1.5x best @base variant"][0]  # 1.43x


def test_idle_p99_target_is_a_ceiling() -> None:
    paired = {"idle_p99": [(30.0, 20.0), (35.0, 20.0), (20.0, 20.0)]}
    ok, detail = verdicts([cell("rest", 1000)], paired)[
        "rest mlp c16 b1 p99 with idle keep-alive connections <= 1.5x without"]
    assert ok and "median 1.50x" in detail
    paired["idle_p99"].append((40.0, 20.0))
    assert not verdicts([cell("rest", 1000)], paired)[
        "rest mlp c16 b1 p99 with idle keep-alive connections <= 1.5x without"][0]


def test_unknown_target_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SystemExit):
        server_bench_args.parse_args(["--targets", "grpc,tfserving"])
    with pytest.raises(SystemExit):  # @base needs the revision to measure
        server_bench_args.parse_args(["--targets", "grpc@base"])


class _Status(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b'{"model_version_status": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_idle_connections_stay_open_until_closed(status_server: http.server.ThreadingHTTPServer) -> None:
    port = status_server.server_address[1]
    idle = IdleConnections(port, "/v1/models/mlp", 50)
    try:
        assert len(idle.sockets) == 50
        assert idle.still_open() == 50
        idle.sockets[0].shutdown(2)  # as if the server had closed it: reads EOF
        assert idle.still_open() == 49
    finally:
        idle.close()
    assert idle.sockets == []


def test_v2_targets_judge_the_table_and_the_paired_rounds() -> None:
    cells = [cell("grpc", 1000), cell("v2-grpc", 950), cell("grpc", 100, batch=32), cell("v2-grpc", 80, batch=32),
             cell("v2-rest", 1000, batch=1024, conc=1), cell("v2-rest-bin", 2500, batch=1024, conc=1)]
    paired = {"v2_grpc_worst": [(95.0, 100.0), (92.0, 100.0), (70.0, 100.0)],
              "v2_binary_mlp_c1": [(1900.0, 1000.0)] * 3}
    result = verdicts(cells, paired)
    table_ok, detail = result["V2 gRPC >= 0.9x TF Serving gRPC, every cell (table)"]
    assert not table_ok and "0.80x (mlp b32 c16" in detail
    assert result["V2 gRPC >= 0.9x TF Serving gRPC at the table's worst cell (mlp b32 c16), paired"][0]  # 0.92x
    assert not result["mlp b1024 c1 V2 REST binary >= 2x V2 REST JSON"][0]  # paired 1.9x beats the table's 2.5x
    assert "v2-grpc" in server_bench_args.parse_args(["--targets", "v2-grpc,v2-rest-bin"]).targets
