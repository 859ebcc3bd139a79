"""``tfship stop``: stop and remove server containers started by `tfship serve --docker`."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
@click.option("--timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
def stop(name: str | None, timeout: int) -> None:
    """Stop the container NAME, or every server container tfship started."""
    from tfship.deploy.docker.run import stop_containers

    stopped = stop_containers(name, timeout=timeout)
    if not stopped:
        click.echo("no tfship server containers running" + (f" named {name}" if name else ""))
    for container in stopped:
        click.echo(f"stopped {container}")
