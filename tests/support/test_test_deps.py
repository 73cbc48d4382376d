"""build-support/test-deps, which `./pants test` sources: with every tool present it only exports
their versions (quickly); with one missing and nothing allowed to install it, it stops with one
line naming the tool and the command that installs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

SCRIPT = Path("build-support/test-deps").resolve()
# What the script itself runs besides the tools it checks.
BASICS = ("id", "head", "dpkg-query")


def tools() -> list[tuple[str, str]]:
    """(command, Debian package) of each line of the script's TEST_TOOLS list."""
    listed = subprocess.run(
        ["bash", "-c", 'source "$1"; printf "%s\\n" "${TEST_TOOLS[@]}"', "bash", str(SCRIPT)],
        check=True, capture_output=True, text=True,
    ).stdout
    return [(line.split()[0], line.split()[1]) for line in listed.splitlines()]


def path_without(tmp_path: Path, missing: str) -> str:
    """A PATH of links to the commands the script uses, all but `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in [*BASICS, *(c for c, _ in tools())]:
        found = shutil.which(command)
        if command != missing and found:
            (bin_dir / command).symlink_to(found)
    return str(bin_dir)


def test_every_tool_is_present_and_its_version_exported() -> None:
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    listed = result.stdout.strip().split("; ")
    assert [entry.split(" ", 1)[0] for entry in listed] == [c for c, _ in tools()]
    assert all(re.search(r"\d", entry.split(" ", 1)[1]) for entry in listed), listed
    assert elapsed < 2, f"test-deps took {elapsed:.2f} s with everything installed"


def test_each_tool_gets_a_variable_the_tests_can_list() -> None:
    exported = subprocess.run(
        ["bash", "-c", 'source "$1" && test_deps && env', "bash", str(SCRIPT)],
        check=True, capture_output=True, text=True,
    ).stdout
    variables = dict(line.split("=", 1) for line in exported.splitlines() if "=" in line)
    assert variables["MODELSEAL_TOOL_SOFTHSM2_UTIL"]
    assert variables["MODELSEAL_TOOL_DIFFOSCOPE"]
    for command, _ in tools():
        name = "MODELSEAL_TOOL_" + command.upper().replace("-", "_").replace(".", "_")
        assert variables[name] in variables["MODELSEAL_SYSTEM_TOOLS"]


def test_a_missing_tool_stops_with_one_line_naming_it_and_its_package(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run(
        [bash, str(SCRIPT)],
        env={"PATH": path_without(tmp_path, "softhsm2-util"), "MODELSEAL_TEST_DEPS": "check",
             "HOME": os.environ.get("HOME", "/")},
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "the tests need softhsm2-util" in lines[0]
    assert "apt-get install -y --no-install-recommends softhsm2" in lines[0]
    assert "diffoscope" not in lines[0]  # present: not named
