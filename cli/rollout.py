"""``tfship rollout``: shadow, canary steps, then promote or roll back on every replica."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tfship.cli.exit_codes import EXIT_USAGE, exit_code


@click.command()
@click.argument("models_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("name")
@click.argument("source", required=False)
@click.option("--version", type=int, default=None, help="Roll out an already exported version instead of SOURCE.")
@click.option("--url", "urls", multiple=True, help="The fleet: repeat --url, or grpc://a:8500,b:8500, or "
              "dns:///NAME:8500 (every replica is asked directly).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The model config file the replicas read (the stable/canary labels live there).")
@click.option("--steps", default="shadow:5m,5%:5m,25%:5m,100%", show_default=True,
              help="shadow:DURATION, then N%:DURATION steps; a last bare 100% promotes.")
@click.option("--gate", "gates", default="agreement>=0.999,error_rate<=0.001,p99<=1.5x,min_pairs=500,min_samples=300",
              show_default=True, help="What every replica must pass in every step.")
@click.option("--shadow-percent", type=click.FloatRange(0, 100), default=10.0, show_default=True,
              help="Share of the unpinned requests stable answers that also run on the candidate.")
@click.option("--min-replicas", type=click.IntRange(min=1), default=None,
              help="Replicas that must keep answering (default: all); below it the rollout rolls back.")
@click.option("--lease", "lease_seconds", type=float, default=30.0, show_default=True,
              help="Seconds a replica keeps a step without hearing from this command, then serves stable only.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds for each server state change.")
@click.option("--retention", type=int, default=2, show_default=True, help="Version dirs kept on disk.")
@click.option("--allow-signature-change", is_flag=True, help="Accept a candidate whose signature differs.")
@click.option("--unsafe", is_flag=True, help="Load SOURCE with Keras safe mode off (Lambda layers).")
@click.option("--status", "show_status", is_flag=True, help="Show where a rollout of NAME stands, on every replica.")
@click.option("--resume", is_flag=True, help="Continue an interrupted rollout at the step it stopped in.")
@click.option("--abort", is_flag=True, help="Roll an interrupted rollout back on every replica.")
@click.option("--json", "as_json", is_flag=True, help="--status as JSON.")
def rollout(models_dir: Path, name: str, source: str | None, version: int | None, urls: tuple[str, ...],
            config_file: Path | None, steps: str, gates: str, shadow_percent: float, min_replicas: int | None,
            lease_seconds: float, timeout: float, retention: int, allow_signature_change: bool, unsafe: bool,
            show_status: bool, resume: bool, abort: bool, as_json: bool) -> None:
    """Roll a new version of NAME out in steps, judged on its predictions, on every replica.

    \b
    SOURCE (.keras, .h5 or SavedModel dir) is exported as the next version; or pass --version N.
    Like `tfship swap`: signature guard and parity on the export's samples first. Then the
    serving version is labelled `stable`, the candidate is loaded beside it on every replica,
    passes parity there and is labelled `canary`, and the steps run on every replica:
      shadow  a share of the unpinned requests also runs on the candidate, off the callers'
              path; its answers are compared with stable's within the export's tolerances
      N%      the candidate answers N % of the unpinned requests
    Requests that name a version or a label are served exactly as TF Serving serves them.
    Every second each replica's numbers are read; a failed gate rolls back on every replica
    (the message names the replica, the gate and the numbers) and the command exits 1. The last
    step promotes: `stable` moves to the candidate everywhere, the old version unloads when idle.
    Both outcomes are recorded in MODELS_DIR/.tfship/swap-history.jsonl.

    \b
    Needs tfship-model-server replicas (the real TensorFlow Serving image cannot shadow or
    split; there, check predictions with the replay gate, `tfship replay`, then `tfship swap`).

    \b
    Examples:
      tfship rollout models mnist mnist_v2.keras --url grpc://a:8500,b:8500,c:8500 \\
          --config models/models.config
      tfship rollout models mnist --version 7 --url dns:///mnist-headless:8500 --config /models/models.config \\
          --steps shadow:10m,1%:10m,10%:10m,50%:10m,100% --gate "agreement>=0.9999,p99<=1.2x"
      tfship rollout models mnist --status
      tfship rollout models mnist --resume --url ... --config ...   (or --abort)
    """
    from tfship.deploy.rollout import RolloutOptions, abort_rollout, resume_rollout, rollout_status
    from tfship.deploy.rollout import rollout as run_rollout

    from tfship.errors import SwapError

    if show_status:
        _print_status(rollout_status(models_dir, name, ",".join(urls) or None), as_json)
        return
    if not urls or config_file is None:
        click.secho("error: --url and --config are required (except with --status).", fg="red", err=True)
        raise SystemExit(EXIT_USAGE)
    options = RolloutOptions(
        url=",".join(urls), config_file=config_file, steps=steps, gates=gates, shadow_percent=shadow_percent,
        min_replicas=min_replicas, lease_seconds=lease_seconds, timeout=timeout, retention=retention,
        allow_signature_change=allow_signature_change, on_event=lambda m: click.echo(f"  {m}", err=True))
    try:
        if resume:
            record = resume_rollout(models_dir, name, options=options)
        elif abort:
            record = abort_rollout(models_dir, name, options=options)
        else:
            if (source is None) == (version is None):
                click.secho("error: give SOURCE or --version N (one of them).", fg="red", err=True)
                raise SystemExit(EXIT_USAGE)
            record = run_rollout(models_dir, name, source, version=version, options=options,
                                 export_kwargs={"safe_mode": not unsafe} if source else None)
    except KeyboardInterrupt:
        click.secho("interrupted: the fleet serves stable; `tfship rollout --resume` or `--abort`", fg="yellow",
                    err=True)
        raise SystemExit(130) from None
    except SwapError as exc:
        click.secho(f"rollout failed: {exc}", fg="red", err=True)
        raise SystemExit(exit_code(exc)) from None
    click.echo(f"{record.outcome}: {record.model} label 'stable' {record.from_version} -> {record.to_version}")
    if record.retired:
        click.echo(f"  retired versions {record.retired}")


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status, indent=1, sort_keys=True))
        return
    saved = status["saved"]
    if saved is None:
        click.echo(f"{status['model']}: no rollout in progress")
    else:
        click.echo(f"{status['model']}: rollout {saved['stable']} -> {saved['candidate']} {saved['phase']} at step "
                   f"{int(saved['step']) + 1} of {saved['steps']} (gates {saved['gates']})")
    for replica in status["replicas"]:
        if "error" in replica:
            click.echo(f"  {replica['url']}  {replica['error']}")
            continue
        window = replica.get("window") or {}
        shadow = window.get("shadow") or {}
        line = (f"  {replica['url']}  {'active' if replica['active'] else 'idle'}  step {replica['step'] or '-'}  "
                f"stable {replica['stable']}  candidate {replica['candidate']}  loaded {replica['loaded']}  "
                f"canary {replica['canary_percent']:g}%  shadow {replica['shadow_percent']:g}%")
        if shadow:
            line += (f"  pairs {shadow['pairs']} agree {shadow['agreeing']} dropped {shadow['dropped_saturated']} "
                     f"worst {shadow['worst_abs_error']}")
        if replica.get("expired"):
            line += "  LEASE EXPIRED (serving stable only)"
        click.echo(line)
