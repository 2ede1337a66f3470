import subprocess
import sys

from typer.testing import CliRunner

from leanvl.cli.app import app

runner = CliRunner()


def test_help_lists_only_registered_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "models" in result.output


def test_models_command_runs():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output


def test_console_script_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "leanvl", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    # every command the README documents is registered by `leanvl.cli` itself
    listed = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("│ ")}
    expected = {"models", "data", "convert", "train", "eval", "demo", "bench", "index"}
    assert expected | {"search", "serve", "ask"} <= listed, proc.stdout


def test_models_is_a_subcommand_not_the_root():
    result = runner.invoke(app, ["models", "--help"])
    assert result.exit_code == 0 and "List model presets" in result.output
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
