"""``tfship inspect BASE/NAME [--verify]``: versions, signatures, manifest summary, integrity."""

from __future__ import annotations

import json
from typing import Any

import click
from tfship.cli.exit_codes import EXIT_CHECK_FAILED


def _report_json(report: Any) -> dict[str, Any]:
    return {
        "path": str(report.path),
        "name": report.name,
        "ok": report.ok,
        "staging_dirs": report.staging_dirs,
        "versions": [
            {
                "version": v.version,
                "path": str(v.path),
                "ok": v.ok,
                "problems": v.problems,
                "manifest": None if v.manifest is None else v.manifest.to_json(),
                "signatures": {k: s.to_json() for k, s in v.signatures.items()},
            }
            for v in report.versions
        ],
    }


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--verify", is_flag=True, help="Re-check every file's sha256 against the manifest.")
@click.option("--all-signatures/--serving-only", default=True, show_default=True,
              help="List every signature or only serving_default.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(path: str, verify: bool, all_signatures: bool, as_json: bool) -> None:
    """List the versions of model dir PATH (BASE/NAME) with their signatures.

    Exit code 1 when a version is incomplete or (with --verify) tampered.
    """
    from tfship.export import inspect_model_dir

    report = inspect_model_dir(path, verify=verify)
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
    else:
        click.echo(f"model {report.name} at {report.path}: {len(report.versions)} version(s)")
        for v in report.versions:
            status = "OK" if v.ok else "PROBLEM"
            if v.manifest is not None:
                m = v.manifest
                origin = (f"tfship manifest: created {m.created}, TF {m.tensorflow_version}, "
                          f"Keras {m.keras_version}, {m.sample_count} samples, {len(m.files)} files")
            else:
                origin = "no tfship manifest"
            checked = " (checksums verified)" if v.checksums is not None and v.checksums.ok else ""
            click.echo(f"  version {v.version} [{status}] {v.path.name}/  {origin}{checked}")
            for key, sig in v.signatures.items():
                if key == "__saved_model_init_op" or (not all_signatures and key != "serving_default"):
                    continue
                click.echo(f"    {key} ({sig.method}): {sig.summary()}")
            for problem in v.problems:
                click.secho(f"    ! {problem}", fg="red")
        for staging in report.staging_dirs:
            click.echo(f"  (in-progress or stale export dir {staging}, ignored by TF Serving)")
    if not report.ok:
        raise SystemExit(EXIT_CHECK_FAILED)
