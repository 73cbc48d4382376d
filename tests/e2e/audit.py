"""Small models that the audit tests add to a clone: one that builds the same bytes every time and
depends on one pinned package (so that a changed lock entry shows in its PEX), and one whose
training writes random bytes (so that `pants reproduce` has something to catch).

The tiny model takes its one package, `packaging`, from the `python-default` resolve (the
requirement 3rdparty/python declares: a second python_requirement for it would make its owner
ambiguous, which `model_artifact` refuses), whose lock the build installs anyway for the modelseal
tool: an uncached build of it costs seconds, not the minute that installing the `models` lock
(numpy, scipy, scikit-learn) takes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e.repo import shared_cache

TINY_BUILD = '''\
python_sources(name="lib", resolve="python-default", interpreter_constraints=["CPython==3.11.*"])

model_artifact(
    name="model",
    model_name="tiny",
    version="0.1.0",
    license="MIT",
    entry_point="tiny.handler",
    dependencies=[":lib"],
    weights=["*.bin"],
    metrics={},
    interpreter_constraints=["CPython==3.11.*"],
)
'''

TINY_WEIGHTS = bytes(range(256)) * 64

TINY_HANDLER = '''\
from packaging.version import Version


def load(weights_dir):
    return Version("1.0")


def predict(model, inputs):
    return {"version": str(model)}
'''

def _trained_build(name: str, output: str, data: str = "", description: str = "") -> str:
    """The BUILD file of a model trained in the build from `examples/<name>/train.py`."""
    data_line = f'    data=["{data}"],\n' if data else ""
    description_line = f'    description="{description}",\n' if description else ""
    return f'''\
python_sources(name="lib")

model_training(
    name="train",
    entry_point="{name}.train:train",
{data_line}    dependencies=[":lib"],
    seed=0,
    outputs=["{output}"],
)

model_artifact(
    name="model",
    model_name="{name}",
    version="0.1.0",
{description_line}    license="MIT",
    entry_point="{name}.handler",
    dependencies=["examples/{name}/handler.py:lib"],
    training=":train",
    metrics={{}},
    interpreter_constraints=["CPython==3.11.*"],
)
'''


NONDET_BUILD = _trained_build("nondet", "noise.bin")

NONDET_TRAIN = '''\
import os


def train(data_dir, output_dir, seed, hyperparameters):
    # Ignores the seed: the kind of training that must be attested, since it cannot be reproduced.
    with open(os.path.join(output_dir, "noise.bin"), "wb") as f:
        f.write(os.urandom(64))
    return {}
'''

NONDET_HANDLER = '''\
def load(weights_dir):
    return None


def predict(model, inputs):
    return {}
'''


TRAINED_BUILD = _trained_build(
    "trained",
    "weights.json",
    data="data.csv",
    description="The mean of a column, trained in the build with the standard library only.",
)

TRAINED_TRAIN = '''\
import json
import os


def train(data_dir, output_dir, seed, hyperparameters):
    with open(os.path.join(data_dir, "data.csv"), encoding="utf-8") as f:
        values = [float(line) for line in f if line.strip()]
    with open(os.path.join(output_dir, "weights.json"), "w", encoding="utf-8") as f:
        json.dump({"mean": sum(values) / len(values)}, f)
    return {}
'''

TRAINED_HANDLER = '''\
import json
import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "weights.json"), encoding="utf-8") as f:
        return json.load(f)


def predict(model, inputs):
    return {"mean": model["mean"]}
'''


def add_trained_model(repo: Path) -> str:
    """Write examples/trained (trained in the build, standard library only) into `repo`, commit
    it, and return its address: the smallest model with every step a build has (training,
    model.pex, manifest, signing, archive), for tests about the build rather than about a model."""
    trained = repo / "examples" / "trained"
    trained.mkdir(parents=True)
    (trained / "BUILD").write_text(TRAINED_BUILD)
    (trained / "train.py").write_text(TRAINED_TRAIN)
    (trained / "handler.py").write_text(TRAINED_HANDLER)
    (trained / "data.csv").write_text("1.0\n2.0\n4.5\n")
    commit(repo, "a small trained model")
    return "examples/trained:model"


def add_models(repo: Path, *, nondeterministic: bool = False) -> None:
    """Write examples/tiny (and examples/nondet) into `repo` and commit them."""
    tiny = repo / "examples" / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "BUILD").write_text(TINY_BUILD)
    (tiny / "handler.py").write_text(TINY_HANDLER)
    (tiny / "weights.bin").write_bytes(TINY_WEIGHTS)
    if nondeterministic:
        nondet = repo / "examples" / "nondet"
        nondet.mkdir(parents=True)
        (nondet / "BUILD").write_text(NONDET_BUILD)
        (nondet / "train.py").write_text(NONDET_TRAIN)
        (nondet / "handler.py").write_text(NONDET_HANDLER)
    commit(repo, "audit test models")


def commit(repo: Path, message: str) -> str:
    identity = ["-c", "user.name=auditor", "-c", "user.email=auditor@example.invalid"]
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *identity, "commit", "--quiet", "-m", message],
                   check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def environment(root: Path) -> dict[str, str]:
    """A user's environment: own HOME and data directory, the shared caches."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CACHE_HOME": shared_cache(),
        "XDG_DATA_HOME": str(root / "data"),
    }
    if "PYENV_ROOT" in os.environ:
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    return env


def require_diffoscope() -> None:
    """The audits write diffoscope's reports only when it is installed: a test of those reports
    fails, naming the fix, where diffoscope is missing (a skip would count as a pass)."""
    if not shutil.which("diffoscope"):
        pytest.fail("diffoscope is not installed: run the tests with ./pants test, which installs "
                    "it (build-support/test-deps), or `apt-get install diffoscope-minimal`",
                    pytrace=False)
