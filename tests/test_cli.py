"""The CLI's shape: every verb resolves, and the top-level help stays fast (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner
from tfship.cli import COMMANDS, main


def test_every_registered_verb_is_a_click_command_with_a_summary() -> None:
    for name, (_target, summary) in COMMANDS.items():
        command = main.get_command(click.Context(main), name)
        assert isinstance(command, click.Command), name
        assert summary.endswith("."), name


def test_top_level_help_lists_every_verb_with_its_summary() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, (_target, summary) in COMMANDS.items():
        assert f"{name}" in result.output and summary in result.output


def test_top_level_help_never_imports_tensorflow() -> None:
    probe = (
        "import sys\n"
        "try:\n"
        "    from tfship.cli import main; main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tfship --help imported tensorflow'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, timeout=120)
