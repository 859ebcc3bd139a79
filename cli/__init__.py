"""The ``tfship`` command line: one command per verb, each a thin layer over a library function.

Commands are registered lazily (``name -> "module:attribute"``) so that ``tfship --help`` and the
client-side commands start fast and never import TensorFlow unless the verb needs it. To add a
command, write ``cli/<verb>.py`` (installed as ``tfship.cli.<verb>``) exposing a ``click.Command``
and list it in ``COMMANDS``.

Exit codes scripts can trust: 0 success, 1 a check failed (parity mismatch, tampered version,
swap refused or rolled back), 2 usage or input error, 3 a server/engine could not be reached or
started. :mod:`tfship.cli.exit_codes` maps every library error to one of them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
from tfship.cli.exit_codes import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, exit_code

from tfship import __version__
from tfship.errors import TfshipError

__all__ = ["main", "COMMANDS", "EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_USAGE", "EXIT_UNAVAILABLE"]

#: verb -> ("module:attribute" of its click.Command, one-line summary). The module is imported
#: only when the verb runs, so `tfship --help` lists everything without importing TensorFlow.
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("tfship.cli.export:export", "Keras model or file -> verified, versioned SavedModel dir."),
    "inspect": ("tfship.cli.inspect:inspect", "List versions, signatures and manifests; --verify checksums."),
    "serve": ("tfship.cli.serve:serve", "Serve a models dir (embedded server, or --docker)."),
    "status": ("tfship.cli.status:status", "Versions, states and labels of served models."),
    "predict": ("tfship.cli.predict:predict", "Batch-predict a file through a server (resumable)."),
    "smoke": ("tfship.cli.smoke:smoke", "Check served outputs equal the reference model's."),
    "replay": ("tfship.cli.replay:replay", "Replay captured traffic against a target; report agreement."),
    "swap": ("tfship.cli.swap:swap", "Make a new version the default: verified, zero downtime."),
    "rollback": ("tfship.cli.swap:rollback", "Return the default or a label to the previous version."),
    "rollout": ("tfship.cli.rollout:rollout", "Shadow, canary steps, promote or roll back on every replica."),
    "build": ("tfship.cli.build:build", "Build a TF Serving image with the models baked in."),
    "stop": ("tfship.cli.stop:stop", "Stop containers started by `tfship serve --docker`."),
    "k8s": ("tfship.cli.k8s:k8s", "Render Kubernetes/KServe manifests for a served image."),
    "demo": ("tfship.cli.demo:demo", "Train, export, serve, verify and swap, offline, end to end."),
}

#: The order `tfship --help` lists the verbs in: the flow of a deployment.
_ORDER = list(COMMANDS)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        extra = sorted(set(super().list_commands(ctx)) - set(COMMANDS))
        return _ORDER + extra

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The summaries live in COMMANDS: asking each command would import it (and TensorFlow).
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else "") for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TfshipError as exc:
            # Library errors are already actionable sentences: print them without a traceback.
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exit_code(exc))


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfship")
def main() -> None:
    """tfship: Keras model -> versioned SavedModel -> TF Serving -> verified predictions.

    \b
    Typical flow:
      tfship export model.keras --base models --name mnist    # writes models/mnist/1/
      tfship inspect models/mnist --verify                    # signatures, checksums
      tfship serve models                                     # embedded TF-Serving-compatible server
      tfship smoke --url grpc://127.0.0.1:8500 --model mnist --manifest models/mnist/1

    Run `tfship COMMAND --help` for the details of each command.
    """
