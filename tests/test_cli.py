"""The CLI's shape: every verb resolves, and the top-level help stays fast (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_exit_codes_come_from_one_table_by_error_class() -> None:
    from tfship.cli.exit_codes import EXIT_CHECK_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, exit_code

    from tfship import errors

    assert exit_code(errors.SwapError("refused")) == EXIT_CHECK_FAILED
    assert exit_code(errors.UnavailableError("connection refused")) == EXIT_UNAVAILABLE
    assert exit_code(errors.DockerUnavailableError("no engine")) == EXIT_UNAVAILABLE
    assert exit_code(errors.DockerError("image missing")) == EXIT_USAGE
    assert exit_code(errors.NotFoundError("no such model")) == EXIT_USAGE
    assert exit_code(errors.ConfigError("bad option")) == EXIT_USAGE
    for name in errors.__all__:  # every error class has a code
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.TfshipError):
            assert exit_code(cls.__new__(cls)) in (EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE), name


def test_no_code_sets_an_exit_code_on_an_exception_or_defines_its_own_exit_constant() -> None:
    # The table at the CLI's edge is the only place an error becomes an exit code.
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for top in ("tfship", "export", "serving", "client", "deploy", "cli"):
        for path in (root / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else (
                    [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr == "exit_code":
                        found.append(f"{path.relative_to(root)}:{node.lineno}: sets .exit_code")
                    if (isinstance(target, ast.Name) and target.id.startswith("EXIT_")
                            and path.relative_to(root) != Path("cli/exit_codes.py")):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: defines {target.id}")
    assert not found, "\n".join(found)


def test_an_unreachable_server_exits_3() -> None:
    from tfship.deploy.launch import free_port  # nothing listens there

    result = CliRunner().invoke(main, ["status", "--url", f"grpc://127.0.0.1:{free_port()}", "--model", "m",
                                       "--timeout", "2"])
    assert result.exit_code == 3, result.output
    assert "error:" in result.output


def test_swap_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    no_config = runner.invoke(main, ["swap", str(tmp_path), "m", "--version", "2", "--url", "grpc://127.0.0.1:1",
                                     "--label", "stable"])
    assert no_config.exit_code == 2 and "--label stable needs --config FILE" in no_config.output
    back = runner.invoke(main, ["rollback", str(tmp_path), "m", "--url", "grpc://127.0.0.1:1", "--label", "stable"])
    assert back.exit_code == 2 and "needs --config FILE" in back.output
    retention = runner.invoke(main, ["swap", str(tmp_path), "m", "--version", "2", "--url", "grpc://127.0.0.1:1",
                                     "--retention", "0"])
    assert retention.exit_code == 2 and "--retention" in retention.output
