"""A repository that is not modelseal's: what a team adopting modelseal-pants has.

It has its own pants.toml (the plugin from `[GLOBAL].plugins`, nothing else of modelseal's), its own
resolve and hash-pinned lock with numpy, its own source root `ml/vision`, a numpy model under
`ml/vision/edges/`, two pure-Python ones for `pants reproduce` (the smallest models it can build
twice from nothing: `ml/vision/threshold/`, deterministic, and `ml/vision/noise/`, whose training
writes random bytes), and a `./pants` launcher of its own (`pants reproduce` runs each copy's
launcher). Pants itself comes from modelseal's bootstrap venv and pex
tool (no network to GitHub here); the plugin and the modelseal tool come from a directory of wheels
that modelseal's build produced (`[python-repos].find_links`), everything else from the package
index.

The tool is installed from a resolve of the repository's own (`[modelseal].install_from_resolve`,
docs/adopting.md's "your own pins"), whose lock is the plugin's shipped lock with the modelseal
wheel's sha256 replaced by that of the wheel in the directory (`tool_lock`): so a change under
src/modelseal does not break this test before `build-support/tool-lock` regenerates the shipped
lock (a release step, `build-support/tool-lock --check`).

Run by hand (after `./pants package src/modelseal:wheel rules/modelseal_pants:wheel`):
    python3 tests/e2e/foreign.py --wheels dist --out /tmp/vision-repo
then `cd /tmp/vision-repo && ./pants package ::`.
"""

from __future__ import annotations

import argparse
import hashlib
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

THRESHOLD_HANDLER = '''\
"""A threshold read from the weights: the standard library only, so its model.pex is small."""

import json
import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "threshold.json"), encoding="utf-8") as f:
        return json.load(f)["threshold"]


def predict(model, inputs):
    return {"above": [value > model for value in inputs["values"]]}
'''

THRESHOLD = '{"threshold": 0.5}\n'

THRESHOLD_BUILD = """\
python_sources(name="lib")

model_artifact(
    name="model",
    model_name="threshold",
    version="0.1.0",
    description="Values above a threshold.",
    license="Apache-2.0",
    entry_point="threshold.handler",
    dependencies=[":lib"],
    weights=["*.json"],
    metrics={},
)
"""

NOISE_BUILD = """\
python_sources(name="lib")

model_training(
    name="train",
    entry_point="noise.train:train",
    dependencies=[":lib"],
    seed=0,
    outputs=["noise.bin"],
)

model_artifact(
    name="model",
    model_name="noise",
    version="0.1.0",
    license="MIT",
    entry_point="noise.handler",
    dependencies=["ml/vision/noise/handler.py:lib"],
    training=":train",
    metrics={},
)
"""

NOISE_TRAIN = '''\
import os


def train(data_dir, output_dir, seed, hyperparameters):
    # Ignores the seed: the kind of training that must be attested, since it cannot be reproduced.
    with open(os.path.join(output_dir, "noise.bin"), "wb") as f:
        f.write(os.urandom(64))
    return {}
'''

NOISE_HANDLER = '''\
def load(weights_dir):
    return None


def predict(model, inputs):
    return {}
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
modelseal = "3rdparty/modelseal-lock.txt"

[modelseal]
# The tool from this repository's own resolve: its lock pins the wheel in find_links (tool_lock).
install_from_resolve = "modelseal"
# The bundles' tars too (the test reads and verifies edges' tar): `package` writes them on request.
archive = true

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


def tool_lock(shipped_lock: str, wheels: Path) -> str:
    """The plugin's shipped tool lock with `modelseal==<v>` pinned to the sha256 of the wheel in
    `wheels`: what `build-support/tool-lock` would write for this tree when only modelseal's own
    sources changed (a new dependency still needs that script, and fails this test until run)."""
    found = sorted(wheels.glob("modelseal-*-py3-none-any.whl"))
    assert len(found) == 1, f"expected one modelseal wheel in {wheels}, found {found}"
    version = found[0].name.split("-")[1]
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    stanza = re.compile(
        rf"^modelseal=={re.escape(version)} \\\n(?:    --hash=sha256:\w+(?: \\)?\n)+", re.M
    )
    assert stanza.search(shipped_lock), f"the shipped tool lock pins no modelseal=={version}"
    return stanza.sub(f"modelseal=={version} \\\n    --hash=sha256:{digest}\n", shipped_lock)


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
        "ml/vision/threshold/BUILD": THRESHOLD_BUILD,
        "ml/vision/threshold/handler.py": THRESHOLD_HANDLER,
        "ml/vision/threshold/threshold.json": THRESHOLD,
        "ml/vision/noise/BUILD": NOISE_BUILD,
        "ml/vision/noise/train.py": NOISE_TRAIN,
        "ml/vision/noise/handler.py": NOISE_HANDLER,
        "3rdparty/modelseal-lock.txt": tool_lock(
            (source_repo / "rules" / "modelseal_pants" / "modelseal.lock").read_text(), wheels
        ),
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
