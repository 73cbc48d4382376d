"""The same bundles on a second architecture (issue 18).

`build-support/arm64-root` gives a Debian bookworm arm64 root (built by mmdebstrap, run through
qemu-user-static via binfmt_misc). Inside it, on Debian's own CPython 3.11 for aarch64, the tests
run the very bundles `./pants package` wrote on this x86_64 machine: `modelseal.pex verify` accepts
both examples, their `model.pex predict` answers byte for byte what it answers on x86_64, and a
bundle built for x86_64 only is refused with one line naming the environment it lacks.

Nothing is skipped: without root, or without a way to build the root, the tests fail and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.interpreters import find_python

ARM64_ROOT = Path("build-support/arm64-root").resolve()
EXIT_RUNTIME = 14  # docs/verification.md: "interpreter or wheels do not fit this host"

# name -> (bundle directory, relative to the packaged outputs; input of `predict`)
EXAMPLES = {
    "iris": (
        "examples.iris/model/iris-1.0.0",
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]},
    ),
    "sentiment": (
        "examples.sentiment/model/sentiment-0.3.0",
        {"texts": ["the food was great", "what an awful movie", "this movie is the worst"]},
    ),
}
X86_64_ONLY = "tests.arm64.x86_64_only/model/sentiment-x86_64-only-0.3.0"


def _keyring() -> Path:
    """The development keyring `./pants package` signed these bundles with."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "modelseal" / "dev-keyring"


def arm64(work: Path, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv in the arm64 root with `work` as its working directory (/work inside)."""
    return subprocess.run(
        [str(ARM64_ROOT), "run", "--bind", str(work), "--", *argv],
        input=stdin, capture_output=True, text=True, timeout=1800,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding what a deployment host receives: the tool, the tars and the keys."""
    if os.geteuid() != 0:
        pytest.fail("the arm64 tests need root (chroot, mounts, binfmt_misc): run them as root")
    prepared = subprocess.run([str(ARM64_ROOT), "path"], capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    work = tmp_path_factory.mktemp("arm64")
    _place("modelseal.pex", work / "modelseal.pex")
    for bundle in [b for b, _ in EXAMPLES.values()] + [X86_64_ONLY]:
        name = Path(bundle).name
        _place(f"{bundle}.tar", work / f"{name}.tar")
    for bundle, _ in EXAMPLES.values():  # predict runs the bundle's model.pex on its weights
        shutil.copytree(bundle, work / Path(bundle).name, copy_function=_place)
    for key in ("owner.pub", "release.pub"):
        shutil.copy(_keyring() / key, work / key)
    return work


def _place(source: str, destination: str | Path) -> None:
    """A hard link where the file system allows one (the bundles are ~200 MB), else a copy; the
    tests only read these files."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy(source, destination)


def verify(work: Path, tar: str) -> subprocess.CompletedProcess[str]:
    return arm64(
        work, "python3", "modelseal.pex", "verify", tar,
        "--trust", "owner.pub", "--release-key", "release.pub", "--allow-development",
    )


def test_the_root_is_aarch64_debian_cpython(work: Path) -> None:
    probe = arm64(
        work, "python3", "-c",
        "import platform, sys;"
        " print(platform.machine(), *sys.version_info[:2], *platform.libc_ver())",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["aarch64", "3", "11", "glibc", "2.36"]
    host = subprocess.run(["uname", "-m"], capture_output=True, text=True)
    assert host.stdout.strip() == "x86_64"


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_verify_and_predict_on_aarch64_as_on_x86_64(work: Path, example: str) -> None:
    bundle, inputs = EXAMPLES[example]
    name = Path(bundle).name
    checked = verify(work, f"{name}.tar")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "on linux aarch64" in checked.stdout, checked.stdout
    # The environment of the PEX's wheels this host is, as the manifest records it.
    assert "environment cp311 manylinux_2_" in checked.stdout, checked.stdout
    assert "_aarch64" in checked.stdout.split("environment cp311 ", 1)[1], checked.stdout
    assert f"verified {example} " in checked.stdout

    on_arm64 = arm64(work, "python3", f"{name}/model.pex", "predict", stdin=json.dumps(inputs))
    assert on_arm64.returncode == 0, on_arm64.stderr
    python = find_python(11)
    assert python, "CPython 3.11, which both examples declare, is not on this machine"
    on_x86_64 = subprocess.run(
        [python, str(work / name / "model.pex"), "predict"],
        input=json.dumps(inputs), capture_output=True, text=True,
    )
    assert on_x86_64.returncode == 0, on_x86_64.stderr
    # Byte for byte: the handlers round probabilities to 6 decimals (docs/formats.md, "Several
    # environments"), well above the last-bit differences of two BLAS builds.
    assert on_arm64.stdout == on_x86_64.stdout
    assert json.loads(on_arm64.stdout)["predictions"]


def test_a_bundle_for_x86_64_only_is_refused_naming_what_it_lacks(work: Path) -> None:
    name = Path(X86_64_ONLY).name
    refused = verify(work, f"{name}.tar")
    assert refused.returncode == EXIT_RUNTIME, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "runtime:" in lines[0] and "model.pex has no environment for this host" in lines[0]
    # Why (the architecture), what it was built for, and what this host is.
    assert "(architecture: built for manylinux_2_" in lines[0], lines[0]
    assert "expected one of cp311 manylinux_2_" in lines[0] and "x86_64" in lines[0], lines[0]
    assert "found CPython 3.11" in lines[0] and "linux aarch64 glibc 2.36" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("bundle", "architectures"),
    [
        (EXAMPLES["iris"][0], {"aarch64", "x86_64"}),
        (EXAMPLES["sentiment"][0], {"aarch64", "x86_64"}),
        (X86_64_ONLY, {"x86_64"}),
    ],
)
def test_the_manifest_lists_the_environments_of_the_wheels_in_the_pex(
    bundle: str, architectures: set[str]
) -> None:
    """`./pants package` wrote runtime.environments from model.pex's wheels (`modelseal manifest
    --pex`), and they are what the same reading of the PEX gives."""
    from modelseal.verify.environments import environments_from_wheels
    from modelseal.verify.hostcheck import read_pex_info

    runtime = json.loads(Path(bundle, "manifest.json").read_text())["runtime"]
    environments = runtime["environments"]
    found = {arch for env in environments for arch in ("aarch64", "x86_64") if env.endswith(arch)}
    assert found == architectures and len(found) <= len(environments), environments
    assert all(env.startswith("cp311 manylinux_2_") for env in environments if "cp311" in env)
    info = read_pex_info(str(Path(bundle, "model.pex")), "model.pex")
    assert info is not None
    assert environments == environments_from_wheels(info.wheels)
