"""``tfship predict``: a resumable batch prediction job over a served model."""

from __future__ import annotations

import click


def version_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--signature", default=None, help="Signature name (default serving_default).")(func)
    func = click.option("--label", default=None, help="Version label (from the server's model config).")(func)
    func = click.option("--version", "model_version", type=int, default=None,
                        help="Exact model version (default: the latest available).")(func)
    return func


@click.command()
@click.option("--url", required=True, help="grpc://HOST:PORT or http(s)://HOST:PORT of the server.")
@click.option("--model", required=True, help="Model name on the server.")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Rows to predict: .npy, .npz, .jsonl (TF Serving rows) or .csv.")
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write predictions: .npy, .npz, .jsonl or .csv.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1))
@version_options
@click.option("--resume", is_flag=True, help="Continue an interrupted job (same options) where it stopped.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per request.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar (rows/s, ETA).")
def predict(url: str, model: str, input_path: str, output_path: str, batch_size: int, concurrency: int,
            model_version: int | None, label: str | None, signature: str | None, resume: bool,
            timeout: float, progress: bool) -> None:
    """Predict every row of an input file through a served model; write the outputs incrementally.

    \b
    Killed (even with SIGKILL)? Rerun with --resume: committed batches are kept, the rest is
    predicted, and the output has exactly the rows of an uninterrupted run.
    \b
    Example:
      tfship predict --url grpc://127.0.0.1:8500 --model digits --input x.npy --output y.jsonl
    """
    from tfship.client import ClientConfig, connect
    from tfship.client.batch.job import run_batch_job

    with connect(url, ClientConfig(timeout=timeout)) as client:
        result = run_batch_job(client, model, input_path, output_path, batch_size=batch_size,
                               concurrency=concurrency, version=model_version, label=label,
                               signature=signature, resume=resume, progress=progress)
    resumed = f" ({result.resumed_batches} batches resumed)" if result.resumed_batches else ""
    click.echo(f"wrote {result.rows} rows to {result.output} in {result.seconds:.1f} s "
               f"({result.rows_per_second:,.0f} rows/s){resumed}")
