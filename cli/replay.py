"""``tfship replay``: send captured traffic to a target and report how far its answers agree."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tfship.errors import ConfigError


def _version_dir(path: Path) -> bool:
    return path.name.isdigit() and (path / "saved_model.pb").exists()


def _manifest_tolerances(version_dir: Path | None) -> Any:
    from tfship.manifest import MANIFEST_PATH, read_manifest

    if version_dir is None or not (version_dir / MANIFEST_PATH).exists():
        return None
    return read_manifest(version_dir).tolerances


@contextlib.contextmanager
def _export_target(export_dir: Path, model: str, version: int | None,
                   timeout: float) -> Iterator[tuple[str, Path | None]]:
    """Serve an export dir (a model's base dir or one version dir) on loopback; yield (url, version dir)."""
    from tfship.deploy.launch import start_model_server
    from tfship.serving.config.model_config import ModelEntry, Specific, format_model_config

    if _version_dir(export_dir):
        base, pinned = export_dir.parent, int(export_dir.name)
        if version is not None and version != pinned:
            raise ConfigError(f"--export {export_dir} is version {pinned} but --version {version} was given.")
        version = pinned
    else:
        base = export_dir
    versions = sorted(int(p.name) for p in base.iterdir() if _version_dir(p)) if base.is_dir() else []
    if not versions:
        raise ConfigError(f"--export {export_dir}: no exported version (BASE/NAME/VERSION/saved_model.pb) there.")
    version = version if version is not None else versions[-1]
    if version not in versions:
        raise ConfigError(f"--export {export_dir}: no version {version} (versions: {versions}).")
    work = Path(tempfile.mkdtemp(prefix="tfship-replay-"))
    try:
        config = work / "models.config"
        config.write_text(format_model_config([ModelEntry(model, str(base.resolve()), Specific([version]))]))
        with start_model_server(model_config_file=str(config), wait_for=[(model, version)], rest=False,
                                timeout=timeout, log_path=work / "server.log") as server:
            yield server.grpc_url, base / str(version)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@click.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--url", default=None, help="Target server: grpc://HOST:PORT or http(s)://HOST:PORT (a fleet URL too).")
@click.option("--export", "export_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Target an export instead: models/NAME (latest or --version) or models/NAME/VERSION, "
                   "served on loopback for the replay.")
@click.option("--model", required=True, help="Model name on the target (and in the capture).")
@click.option("--capture-model", default=None, help="Replay the capture's records of this model (default --model).")
@click.option("--version", "model_version", type=int, default=None, help="Exact target version.")
@click.option("--label", default=None, help="Target version label.")
@click.option("--manifest", "manifest_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Version dir whose manifest tolerances apply (default: --export's version; else defaults).")
@click.option("--min-agreement", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of compared records that must agree; below it the exit status is 1.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="k of the top-k agreement of classifier-shaped outputs.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Write the full report as JSON here (needed for --resume).")
@click.option("--resume", is_flag=True, help="Continue an interrupted replay (same options and --report).")
@click.option("--worst", default=10, show_default=True, type=click.IntRange(min=0), help="Worst records to list.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
@click.option("--start-timeout", type=float, default=300.0, show_default=True,
              help="Seconds the --export server may take to load the model.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def replay(captures: tuple[str, ...], url: str | None, export_dir: str | None, model: str,
           capture_model: str | None, model_version: int | None, label: str | None, manifest_dir: str | None,
           min_agreement: float, top_k: int, concurrency: int, report_path: str | None, resume: bool,
           worst: int, timeout: float, start_timeout: float, progress: bool) -> None:
    """Replay captured calls (capture files or directories) against a target and compare answers.

    Each captured Predict/Classify/Regress is sent again and its answer compared with the captured
    one using the model's tolerances (exact for ints and strings), plus top-1/top-k agreement for
    classifier-shaped outputs. The report lists agreement per output, the worst records with their
    place in the capture (file#index, byte offset) and the target's latency.

    \b
    Exit status: 0 agreement >= --min-agreement; 1 below it, or a capture file could not be read
    whole (corrupt record: the error names file and offset; the other files are still replayed);
    2 bad options; 3 the target is unreachable.
    \b
    Examples:
      tfship replay capture/ --url grpc://127.0.0.1:8500 --model digits --version 2
      tfship replay capture/ --export models/digits/3 --model digits --min-agreement 0.98
    """
    from tfship.client import ClientConfig, connect
    from tfship.client.replay import replay_capture

    if (url is None) == (export_dir is None):
        raise ConfigError("Give exactly one target: --url URL or --export DIR.")
    if model_version is not None and label is not None:
        raise ConfigError("Give --version or --label, not both.")
    if resume and report_path is None:
        raise ConfigError("--resume needs the --report path of the interrupted replay.")
    state = Path(f"{report_path}.tfship-parts") if report_path else None
    with contextlib.ExitStack() as stack:
        version_dir = Path(manifest_dir) if manifest_dir else None
        if export_dir is not None:
            url, served_dir = stack.enter_context(_export_target(Path(export_dir), model, model_version,
                                                                           start_timeout))
            version_dir = version_dir or served_dir
            model_version = int(served_dir.name) if served_dir is not None else model_version
        assert url is not None
        client = stack.enter_context(connect(url, ClientConfig(timeout=timeout)))
        report = replay_capture(client, model, captures, version=model_version, label=label,
                                tolerances=_manifest_tolerances(version_dir), capture_model=capture_model,
                                concurrency=concurrency, min_agreement=min_agreement, top_k=top_k,
                                state_dir=state, resume=resume, progress=progress)
    click.echo(report.text(worst))
    if report_path:
        Path(report_path).write_text(json.dumps(report.to_json(), indent=2, default=float) + "\n")
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)
    if not report.ok or report.read_errors:
        raise SystemExit(1)
