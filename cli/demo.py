"""``tfship demo``: train, export, serve, verify, hot-swap - offline, one command."""

from __future__ import annotations

import click
from tfship.cli.exit_codes import EXIT_CHECK_FAILED


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Keep the exported models here (default: a temporary dir, removed at the end).")
def demo(workdir: str | None) -> None:
    """Train a digits classifier, export v1, serve it, prove served == in-memory over gRPC and REST,
    export v2, watch the server switch, verify again. Exits 1 if any check fails."""
    from tfship.deploy.demo import run_demo

    if workdir:
        import os

        os.makedirs(workdir, exist_ok=True)
    result = run_demo(workdir, echo=click.echo)
    if not result.ok:
        raise SystemExit(EXIT_CHECK_FAILED)
