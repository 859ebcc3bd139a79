"""``tfship export MODEL --base DIR --name NAME``: thin layer over :func:`tfship.export.export_model`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tfship.errors import ConfigError


def _load_samples_file(path: str) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read --samples {path!r}: {exc}. Pass an .npz file with one "
                          "array per input name (np.savez('s.npz', image=batch))") from exc
    # Accept a tfship_samples.npz too: its inputs are stored as "inputs/<name>".
    if any(k.startswith("inputs/") for k in arrays):
        arrays = {k[len("inputs/"):]: v for k, v in arrays.items() if k.startswith("inputs/")}
    return arrays


def _parse_tolerances(specs: tuple[str, ...], atol: float | None, rtol: float | None) -> dict[str, Any]:
    from tfship.tolerance import DEFAULT_TOLERANCES

    out: dict[str, Any] = {}
    if atol is not None or rtol is not None:
        for dtype, default in DEFAULT_TOLERANCES.items():
            out[dtype] = (default.atol if atol is None else atol, default.rtol if rtol is None else rtol)
    for spec in specs:
        dtype, sep, values = spec.partition("=")
        try:
            a, r = (float(v) for v in values.split(","))
        except ValueError:
            raise ConfigError(
                f"invalid --tolerance {spec!r}: write DTYPE=ATOL,RTOL, e.g. float32=1e-5,1e-4"
            ) from None
        if not sep:
            raise ConfigError(f"invalid --tolerance {spec!r}: write DTYPE=ATOL,RTOL")
        out[dtype] = (a, r)
    return out


@click.command("export")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--base", "base_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Base directory; the version is written to BASE/NAME/VERSION.")
@click.option("--name", required=True, help="Model name: letters, digits, '_', '.', '-'.")
@click.option("--version", "version", type=int, default=None,
              help="Version to publish (default: highest existing + 1). Never overwrites.")
@click.option("--architecture", default=None, metavar="MODULE:CALLABLE",
              help="For a weights file: callable that builds the model, e.g. mypkg.models:build.")
@click.option("--custom-object", "custom_objects", multiple=True, metavar="MODULE:NAME",
              help="Custom layer/function the model file needs (repeatable).")
@click.option("--unsafe", is_flag=True,
              help="Load .keras files with safe_mode=False (allows Lambda layers). Only for trusted files.")
@click.option("--samples", "samples_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help=".npz with one array per input name (first axis = batch).")
@click.option("--sample-count", default=4, show_default=True, help="Generated samples when --samples is not given.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance for every float dtype.")
@click.option("--rtol", type=float, default=None, help="Relative tolerance for every float dtype.")
@click.option("--tolerance", "tolerance_specs", multiple=True, metavar="DTYPE=ATOL,RTOL",
              help="Per-dtype tolerance, e.g. float32=1e-5,1e-4 (repeatable).")
@click.option("--no-warmup", is_flag=True, help="Do not write tf_serving_warmup_requests.")
@click.option("--warmup-from", "warmup_from", multiple=True, type=click.Path(exists=True),
              help="Build the warmup requests from captured traffic (capture files or dirs; repeatable) "
                   "instead of the samples: one per distinct input shape first.")
@click.option("--warmup-records", default=100, show_default=True, type=click.IntRange(1, 1000),
              help="At most this many warmup records from --warmup-from.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def export(model: str, base_dir: str, name: str, version: int | None, architecture: str | None,
           custom_objects: tuple[str, ...], unsafe: bool, samples_file: str | None,
           sample_count: int, atol: float | None, rtol: float | None,
           tolerance_specs: tuple[str, ...], no_warmup: bool, warmup_from: tuple[str, ...],
           warmup_records: int, as_json: bool) -> None:
    """Export MODEL (.keras, .h5, SavedModel dir, or weights file + --architecture) to BASE/NAME/VERSION.

    \b
    The exported SavedModel is reloaded and compared with the original model on sample inputs
    before it is published; nothing is published on a mismatch.
    \b
    Examples:
      tfship export model.keras --base models --name mnist
      tfship export weights.weights.h5 --architecture mypkg.models:build --base models --name mnist
      tfship export model.keras --base models --name mnist --warmup-from capture/
    """
    from tfship.export import export_model
    from tfship.export.sources import parse_custom_objects

    result = export_model(
        model,
        base_dir,
        name,
        version,
        samples=_load_samples_file(samples_file) if samples_file else None,
        custom_objects=parse_custom_objects(custom_objects),
        safe_mode=not unsafe,
        architecture=architecture,
        tolerances=_parse_tolerances(tolerance_specs, atol, rtol),
        warmup=not no_warmup,
        sample_count=sample_count,
        warmup_from=list(warmup_from) or None,
        warmup_records=warmup_records,
    )
    if as_json:
        click.echo(json.dumps({"path": str(result.path), "version": result.version,
                               "model_name": result.model_name,
                               "signature": result.signature.to_json()}, indent=2))
        return
    click.echo(f"exported {result.model_name} version {result.version} to {result.path}")
    click.echo(f"  serving_default: {result.signature_summary}")
    for diff in result.diffs:
        click.echo(f"  verified {diff.describe()}")
    click.echo(f"  manifest: {Path(result.path) / 'assets.extra' / 'tfship_manifest.json'}")
