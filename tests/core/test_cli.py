from __future__ import annotations

import pytest

from modelseal import __version__
from modelseal.cli import COMMANDS, EXIT_USAGE, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelseal {__version__}"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command.name in out
        assert command.summary in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "usage: modelseal" in capsys.readouterr().err


@pytest.mark.parametrize("command", [c.name for c in COMMANDS if c.handler is None])
def test_unavailable_commands_say_so(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--any", "arguments"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (
        f"modelseal {command}: not yet available in modelseal {__version__}"
    )


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err
