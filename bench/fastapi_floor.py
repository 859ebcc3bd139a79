"""The FastAPI + ``model.predict`` floor (peer_apps/fastapi_floor.py) as a server under benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

from server_process import Server, free_port

APP = Path(__file__).parent / "peer_apps" / "fastapi_floor.py"


def start_fastapi(models: dict[str, tuple[Path, Path, tuple[int, ...]]], workdir: Path) -> Server | None:
    """The floor on a free port serving each model's .keras file; None when FastAPI is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("fastapi/uvicorn not installed: skipping the FastAPI floor (pip install -e '.[bench]')")
        return None
    port = free_port()
    argv = [sys.executable, str(APP), str(port)] + [f"{n}={k}" for n, (_, k, _) in models.items()]
    log = workdir / "fastapi.log"
    return Server(argv, log, None, port).ready([f"http://127.0.0.1:{port}/ready"])
