"""A repository that is not modelseal's: what a team adopting modelseal-pants has.

It has its own pants.toml (the plugin from `[GLOBAL].plugins`, nothing else of modelseal's), its own
resolve and hash-pinned lock with numpy, its own source root `ml/vision`, a model under
`ml/vision/edges/`, and a `./pants` launcher of its own (`pants reproduce` runs each copy's
launcher). Pants itself comes from modelseal's bootstrap venv and pex tool (no network to GitHub
here); the plugin and the modelseal tool come from a directory of wheels that modelseal's build
produced (`[python-repos].find_links`), everything else from the package index.

Run by hand (after `./pants package src/modelseal:wheel rules/modelseal_pants:wheel`):
    python3 tests/e2e/foreign.py --wheels dist --out /tmp/vision-repo
then `cd /tmp/vision-repo && ./pants package ::`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

HANDLER = '''\
"""Edge detection: a 3x3 kernel read from the weights, convolved with numpy."""

import json
import os

import numpy as np


def load(weights_dir):
    with open(os.path.join(weights_dir, "kernel.json"), encoding="utf-8") as f:
        return np.array(json.load(f)["kernel"], dtype=np.float64)


def predict(model, inputs):
    image = np.array(inputs["image"], dtype=np.float64)
    height, width = image.shape
    out = np.zeros((height - 2, width - 2))
    for i in range(3):
        for j in range(3):
            out += model[i, j] * image[i : i + height - 2, j : j + width - 2]
    return {"edges": out.tolist()}
'''

KERNEL = '{"kernel": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]}\n'

MODEL_BUILD = """\
python_sources(name="lib")

# No resolve is named anywhere: the handler's python_sources use [python].default_resolve ("ml").
model_artifact(
    name="model",
    model_name="edges",
    version="1.2.0",
    description="Laplacian edge detector.",
    license="Apache-2.0",
    entry_point="edges.handler",
    dependencies=[":lib"],
    weights=["kernel.json"],
    metrics={},
)
"""

PANTS_TOML = """\
[GLOBAL]
pants_version = "2.17.1"
plugins = ["modelseal-pants=={version}"]
backend_packages = ["pants.backend.python", "modelseal_pants"]

[anonymous-telemetry]
enabled = false

[source]
root_patterns = ["/ml/vision"]

[python]
interpreter_constraints = ["CPython==3.11.*"]
enable_resolves = true
default_resolve = "ml"
# A pip-tools lock (hash-pinned requirements) rather than a Pants-generated one.
invalid_lockfile_behavior = "ignore"

[python.resolves]
ml = "3rdparty/ml-lock.txt"

[python-bootstrap]
search_path = ["<PATH>", "<PYENV>"]

[python-infer]
use_rust_parser = true

[python-repos]
# Where the modelseal-pants and modelseal wheels are, until they are on the package index.
find_links = ["file://{wheels}"]

{pex_cli}
"""

LAUNCHER = """\
#!/usr/bin/env bash
# This repository's Pants launcher: Pants 2.17.1 from an existing virtualenv.
# Pants' sandboxes create files under the caller's umask and a PEX records each file's mode, so a
# launcher fixes the umask for byte-reproducible PEXes (docs/adopting.md).
umask 022
exec {python} -m pants "$@"
"""


def wheel_version(wheels: Path) -> str:
    found = sorted(wheels.glob("modelseal_pants-*-py3-none-any.whl"))
    assert found, f"no modelseal_pants wheel in {wheels}"
    return found[-1].name.split("-")[1]


def pex_cli_section(source_pants_toml: str, pex_tool: str) -> str:
    """modelseal's [pex-cli] section (Pants' pex tool, pinned by digest), pointed at its file."""
    section = re.search(r"^\[pex-cli\]\n(.*?)(?=^\[)", source_pants_toml, re.M | re.S)
    assert section, "pants.toml has no [pex-cli] section"
    lines = [
        line for line in section.group(0).splitlines()
        if not line.startswith("#") and not line.startswith("url_template")
    ]
    return "\n".join([*lines, f'url_template = "file://{pex_tool}"', ""])


def numpy_lock(models_lock: str) -> tuple[str, str]:
    """numpy's stanza of modelseal's models lock (version, lines with every hash)."""
    found = re.search(r"^(numpy==(\S+) \\\n(?:    .*\n)+)", models_lock, re.M)
    assert found, "3rdparty/models/lock.txt pins no numpy"
    stanza = "".join(
        line + "\n" for line in found.group(1).splitlines() if "--hash" in line or "==" in line
    )
    return found.group(2), stanza.rstrip(" \\\n") + "\n"


def make_repo(
    destination: Path, wheels: Path, source_repo: Path, bootstrap_venv: Path
) -> Path:
    """Write the repository and commit it (a fixed author and date: the commit time is the
    bundle's SOURCE_DATE_EPOCH)."""
    version = wheel_version(wheels)
    source_toml = (source_repo / "pants.toml").read_text()
    pex_tool = next((bootstrap_venv / "pex-tool").glob("pex-*.pex"))
    numpy_version, numpy_stanza = numpy_lock(
        (source_repo / "3rdparty" / "models" / "lock.txt").read_text()
    )
    files = {
        "pants.toml": PANTS_TOML.format(
            version=version,
            wheels=wheels.resolve(),
            pex_cli=pex_cli_section(source_toml, str(pex_tool)),
        ),
        "pants": LAUNCHER.format(python=bootstrap_venv / "bin" / "python"),
        ".gitignore": "/dist/\n/.pants.d/\n/.pids/\n",
        "3rdparty/BUILD": (
            f'python_requirement(name="numpy", requirements=["numpy=={numpy_version}"])\n'
        ),
        "3rdparty/ml-lock.txt": numpy_stanza,
        "ml/vision/edges/BUILD": MODEL_BUILD,
        "ml/vision/edges/handler.py": HANDLER,
        "ml/vision/edges/kernel.json": KERNEL,
    }
    for relative, content in files.items():
        path = destination / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (destination / "pants").chmod(0o755)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Vision Team", "GIT_AUTHOR_EMAIL": "vision@example.com",
        "GIT_COMMITTER_NAME": "Vision Team", "GIT_COMMITTER_EMAIL": "vision@example.com",
        "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    }
    for argv in (["init", "--quiet"], ["add", "-A"], ["commit", "--quiet", "-m", "vision models"]):
        subprocess.run(["git", "-C", str(destination), *argv], check=True, env=env)
    return destination


def bootstrap_venv(source_repo: Path) -> Path:
    """modelseal's bootstrapped Pants venv (`MODELSEAL_BOOTSTRAP_ONLY=1 ./pants` prints it)."""
    out = subprocess.run(
        [str(source_repo / "pants")], env={**os.environ, "MODELSEAL_BOOTSTRAP_ONLY": "1"},
        check=True, capture_output=True, text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--wheels", required=True, type=Path, help="the directory of the wheels")
    parser.add_argument("--out", required=True, type=Path, help="where to write the repository")
    args = parser.parse_args()
    source = Path(__file__).resolve().parents[2]
    print(make_repo(args.out, args.wheels, source, bootstrap_venv(source)))


if __name__ == "__main__":
    main()
