"""The docs match the tool: every fenced shell block of README.md and docs/*.md runs, in order,
page by page, and must exit 0, unless the line before it says why it cannot run here:

    <!-- docs-test: skip: needs pants -->

Such marks are counted and listed (`test_skipped_blocks_are_listed` prints them); they are not
pytest skips, and a block without one runs. Blocks fenced as `text`, `json`, `toml`, `python`
show output or files, not commands, and are not run.

Each page runs in a fresh directory that holds what its commands name: `modelseal.pex` and
`dist/modelseal.pex` (a zipapp of this checkout's modelseal, run by `python3`, which is this
test's interpreter), `modelseal` on PATH, signed bundles from tests/core/verify_fixtures.py at the
paths the pages use, `owner.pub` and `release.pub`, and a HOME of its own with the passphrase
files operations.md assumes. Nothing reaches the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipapp
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelseal.cli.main  # noqa: F401  (the tool in this test's sandbox)
from core.signing_fixtures import Keys, make_keys
from core.verify_fixtures import make_signed_bundle, tar_of

PAGES = ["README.md", *sorted(str(p) for p in Path("docs").glob("*.md"))]
SHELL = {"", "sh", "bash", "shell", "console"}
FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!-- docs-test: skip: (?P<reason>[^>]+?) -->\s*\Z")
SRC = str(Path(__import__("modelseal").__path__[0]).resolve().parent)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    skip: str | None  # the reason, when marked


def blocks(page: str) -> list[Block]:
    text = Path(page).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(2) not in SHELL:
            continue
        before = text[: match.start()].rstrip("\n").splitlines()
        mark = MARK.search(before[-1]) if before else None
        line = text.count("\n", 0, match.start()) + 1
        code = textwrap.dedent(match.group(3))  # fences indented in list items
        found.append(Block(page, line, code, mark.group("reason") if mark else None))
    return found


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def _workspace(root: Path, keys: Keys) -> dict[str, str]:
    """The files the pages' commands name, under `root`; the environment to run them in."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("python3", "modelseal"):  # a wrapper: a symlink would leave the virtualenv
        command = '"$@"' if name == "python3" else '-m modelseal "$@"'
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {command}\n')
        (bin_dir / name).chmod(0o755)
    tool = root / "tool"
    tool.mkdir()
    (tool / "__main__.py").write_text(
        "import sys\nfrom modelseal.cli.main import main\nsys.exit(main())\n"
    )
    zipapp.create_archive(str(tool), str(root / "modelseal.pex"))
    (root / "dist").mkdir()
    shutil.copyfile(root / "modelseal.pex", root / "dist" / "modelseal.pex")
    bundle = make_signed_bundle(str(root / "made"), keys)
    tar_of(bundle, str(root / "iris-1.0.0.tar"))
    for name in ("iris-1.0.0", "sentiment-0.3.0"):
        model = name.split("-")[0]
        directory = root / "dist" / f"examples.{model}" / "model"
        directory.mkdir(parents=True)
        shutil.copytree(bundle, directory / name)
        tar_of(str(directory / name), str(directory / f"{name}.tar"))
    shutil.copyfile(keys.pub("owner"), root / "owner.pub")
    shutil.copyfile(keys.pub("release"), root / "release.pub")
    home = root / "home"
    (home / "keys").mkdir(parents=True, mode=0o700)
    for role in ("owner", "trainer", "builder", "release"):
        secret = home / "keys" / f"{role}.pass"
        secret.write_text(f"insecure test passphrase of {role}\n")
        secret.chmod(0o600)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": SRC,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
    }


@pytest.mark.parametrize("page", PAGES)
def test_every_block_runs(page: str, tmp_path: Path, keys: Keys) -> None:
    env = _workspace(tmp_path, keys)
    (tmp_path / "tmp").mkdir()
    for block in blocks(page):
        if block.skip is not None:
            continue
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-O", "failglob", "-c", block.code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"{block.page}:{block.line} exited {result.returncode}\n{block.code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )


def test_skipped_blocks_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    everything = [b for page in PAGES for b in blocks(page)]
    skipped = [b for b in everything if b.skip is not None]
    with capsys.disabled():
        print(f"\ndocs: {len(everything)} shell blocks, {len(everything) - len(skipped)} run, "
              f"{len(skipped)} marked as not runnable here:")
        for block in skipped:
            print(f"  {block.page}:{block.line}: {block.skip}")
    assert everything and len(skipped) < len(everything)
    for block in skipped:
        assert (block.skip or "").strip(), f"{block.page}:{block.line}: a mark needs a reason"
