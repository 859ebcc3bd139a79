"""``tfship predict``: a resumable batch prediction job over a served model."""

from __future__ import annotations

from typing import Any

import click


def version_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--signature", default=None, help="Signature name (default serving_default).")(func)
    func = click.option("--label", default=None, help="Version label (from the server's model config).")(func)
    func = click.option("--version", "model_version", type=int, default=None,
                        help="Exact model version (default: the latest available).")(func)
    return func


@click.command()
@click.option("--url", default=None, help="grpc://HOST:PORT or http(s)://HOST:PORT of the server; a fleet as a "
              "comma list or dns:///NAME:PORT.")
@click.option("--model", required=True, help="Model name on the server.")
@click.option("--input", "input_path", required=True, type=click.Path(),
              help="Rows to predict: .npy, .npz, .jsonl (TF Serving rows), .csv or .parquet. With --engine ray "
                   "also a directory or a glob of them.")
@click.option("--output", "output_path", required=True, type=click.Path(),
              help="Where to write predictions: .npy, .npz, .jsonl, .csv or .parquet. With --engine ray a "
                   "directory of Parquet parts plus manifest.json.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Rows per request.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1),
              help="Requests in flight (per actor with --engine ray).")
@version_options
@click.option("--resume", is_flag=True, help="Continue an interrupted job (same options) where it stopped.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar (rows/s, ETA).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process. ray: Ray Data actors (pip install 'tfship[ray]').")
@click.option("--ray-address", default=None, help="[ray] A Ray cluster (ray://HOST:10001 or auto); default: start "
              "Ray on this machine for the job.")
@click.option("--actors", default=2, show_default=True, type=click.IntRange(min=1), help="[ray] Scoring actors.")
@click.option("--block-rows", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="[ray] Rows per block: the unit of commit, retry and --resume.")
@click.option("--max-bad-rows", default=0, show_default=True, type=click.IntRange(min=0),
              help="[ray] Rows the model may reject: they go to OUTPUT/rejected/ with their error instead of "
                   "stopping the job.")
@click.option("--export", "export_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="[ray] Score in-process in each actor on an export (models/NAME or models/NAME/VERSION) "
                   "instead of a server.")
def predict(url: str | None, model: str, input_path: str, output_path: str, batch_size: int, concurrency: int,
            model_version: int | None, label: str | None, signature: str | None, resume: bool,
            timeout: float, progress: bool, engine: str, ray_address: str | None, actors: int, block_rows: int,
            max_bad_rows: int, export_dir: str | None) -> None:
    """Predict every row of an input through a served model; write the outputs incrementally.

    \b
    Killed (even with SIGKILL)? Rerun with --resume: committed batches are kept, the rest is
    predicted, and the output has exactly the rows of an uninterrupted run.
    \b
    --engine ray runs the job on Ray Data: --actors actors, each with --concurrency requests in
    flight, score blocks of --block-rows rows and commit each block once (part-NNNNNN.parquet,
    every row with its row_id). The model version (--version, --label or the latest) is pinned
    when the job starts, for every request and for --resume.
    \b
    Examples:
      tfship predict --url grpc://127.0.0.1:8500 --model digits --input x.npy --output y.jsonl
      tfship predict --url grpc://10.0.0.5:8500,10.0.0.6:8500 --model digits --label stable \\
          --input 'rows/*.parquet' --output scores/ --engine ray --actors 8
    """
    if engine == "ray":
        _predict_on_ray(url, model, input_path, output_path, batch_size, concurrency, model_version, label,
                        signature, resume, timeout, progress, ray_address, actors, block_rows, max_bad_rows,
                        export_dir)
        return
    ray_only = {"--ray-address": ray_address, "--max-bad-rows": max_bad_rows, "--export": export_dir}
    given = [name for name, value in ray_only.items() if value]
    if given:
        raise click.UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray.")
    if url is None:
        raise click.UsageError("Give --url (the server to score on).")
    from tfship.client import ClientConfig, connect
    from tfship.client.batch.job import run_batch_job

    with connect(url, ClientConfig(timeout=timeout)) as client:
        result = run_batch_job(client, model, input_path, output_path, batch_size=batch_size,
                               concurrency=concurrency, version=model_version, label=label,
                               signature=signature, resume=resume, progress=progress)
    resumed = f" ({result.resumed_batches} batches resumed)" if result.resumed_batches else ""
    click.echo(f"wrote {result.rows} rows to {result.output} in {result.seconds:.1f} s "
               f"({result.rows_per_second:,.0f} rows/s){resumed}")


def _predict_on_ray(url: str | None, model: str, input_path: str, output_path: str, batch_size: int,
                    concurrency: int, version: int | None, label: str | None, signature: str | None,
                    resume: bool, timeout: float, progress: bool, ray_address: str | None, actors: int,
                    block_rows: int, max_bad_rows: int, export_dir: str | None) -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise click.UsageError("--engine ray needs Ray Data: pip install 'tfship[ray]'.")
    if (url is None) == (export_dir is None):
        raise click.UsageError("Give either --url (a server or fleet) or --export DIR (score in-process).")
    from tfship.client.batch.ray_engine import run_ray_job

    target: Any = url
    if export_dir is not None:
        from tfship.deploy.export_scorer import ExportTarget

        target = ExportTarget(export_dir)
    result = run_ray_job(target, model, input_path, output_path, version=version, label=label,
                         signature=signature, batch_size=batch_size, block_rows=block_rows, actors=actors,
                         inflight=concurrency, max_bad_rows=max_bad_rows, resume=resume,
                         ray_address=ray_address, timeout=timeout, progress=progress)
    notes = [f"{result.resumed_blocks} blocks resumed"] if result.resumed_blocks else []
    if result.rejected_rows:
        notes.append(f"{result.rejected_rows} rows rejected, see {result.output / 'rejected'}")
    extra = f" ({'; '.join(notes)})" if notes else ""
    click.echo(f"wrote {result.rows - result.rejected_rows} rows of model {model} version {result.version} to "
               f"{result.output} in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s){extra}")
