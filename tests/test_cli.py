"""The command line answers --help for every command, without a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from recorder.cli import cli

COMMANDS = ["record", "sim", "demo", "query", "summary", "compact", "recover"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {command}" in result.output or f"Usage: recorder {command}" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert "recorder, version" in result.output
