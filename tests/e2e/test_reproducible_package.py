"""`./pants package` is byte-reproducible across paths, users, clocks, locales and umasks
(signatures included: same key, deterministic ECDSA): the uncached second build of conftest.py
(`REPRODUCED`: the sentiment example and the two wheels) writes the very bytes the first build of
`::` wrote for those targets. The example models the first build writes run, and refuse tampered
weights, on every CPython they declare."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e.repo import Builds, tree_digests

from core.interpreters import find_python

EXAMPLES = {
    # bundle directory -> (declared CPython minors, input, expected labels)
    "examples.iris/model/iris-1.0.0": (
        (11,),
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]},
        ["setosa", "versicolor", "virginica"],
    ),
    "examples.sentiment/model/sentiment-0.3.0": (
        (11, 12, 13),
        {"texts": ["the food was great", "what an awful movie", "this movie is the worst"]},
        ["positive", "negative", "negative"],
    ),
}


def test_every_file_in_dist_is_byte_identical(builds: Builds) -> None:
    first, second = tree_digests(builds.first), tree_digests(builds.second)
    assert "modelseal.pex" in first  # the first build packaged `::`
    # The two distributions, from two clones at different paths: byte-identical like the rest.
    for wheel in ("modelseal-", "modelseal_pants-"):
        assert [name for name in second if name.startswith(wheel) and name.endswith(".whl")]
    for bundle in EXAMPLES:
        assert f"{bundle}/manifest.json" in first
        assert f"{bundle}.tar" in first
    reproduced = "examples.sentiment/model/sentiment-0.3.0"
    for name in ("manifest.json", "model.pex", "model.sig", "evaluation.json"):
        assert f"{reproduced}/{name}" in second, name
    assert f"{reproduced}.tar" in second
    # File for file, what the uncached build wrote is what the first wrote for the same targets.
    outputs = ("examples.sentiment/", "modelseal-", "modelseal_pants-")
    assert second == {name: digest for name, digest in first.items() if name.startswith(outputs)}


def test_no_path_or_user_leaks_into_outputs(builds: Builds) -> None:
    first = builds.first
    checkout = str(first.parent).encode()
    for bundle in EXAMPLES:
        manifest = (first / bundle / "manifest.json").read_bytes()
        for leak in (checkout, b"alice", b"home-a", b"/tmp/"):
            assert leak not in manifest


@pytest.mark.parametrize("bundle", sorted(EXAMPLES))
def test_predictions_agree_on_every_declared_cpython(
    builds: Builds, bundle: str
) -> None:
    minors, inputs, labels = EXAMPLES[bundle]
    directory = builds.first / bundle
    manifest = json.loads((directory / "manifest.json").read_text())
    declared = " ".join(manifest["runtime"]["interpreter_constraints"])
    assert declared in ("CPython==3.11.*", "CPython<3.14,>=3.11"), declared
    outputs = {}
    for minor in minors:
        python = find_python(minor)
        assert python, f"CPython 3.{minor}, which {bundle} declares, is not on this machine"
        result = subprocess.run(
            [python, str(directory / "model.pex"), "predict"],
            input=json.dumps(inputs), capture_output=True, text=True,
        )
        assert result.returncode == 0, result.stderr
        # pex would quietly re-execute under another interpreter if it lacked wheels for this one.
        probe = subprocess.run(
            [python, str(directory / "model.pex"), "-c", "import sys; print(sys.version_info[1])"],
            env={**os.environ, "PEX_INTERPRETER": "1"}, capture_output=True, text=True,
        )
        assert probe.stdout.strip() == str(minor), probe.stderr
        outputs[minor] = json.loads(result.stdout)
    predicted = outputs[minors[0]]["predictions"]
    assert [p if isinstance(p, str) else p["label"] for p in predicted] == labels
    assert all(output == outputs[minors[0]] for output in outputs.values())


def test_a_changed_weight_byte_is_refused(
    builds: Builds, tmp_path: Path
) -> None:
    bundle = tmp_path / "iris"
    shutil.copytree(builds.first / "examples.iris/model/iris-1.0.0", bundle)
    weight = bundle / "weights" / "model.skops"
    data = bytearray(weight.read_bytes())
    data[len(data) // 2] ^= 0x01
    weight.write_bytes(bytes(data))
    result = subprocess.run(
        [str(find_python(11)), str(bundle / "model.pex"), "predict"],
        input='{"instances": [[5.1, 3.5, 1.4, 0.2]]}', capture_output=True, text=True,
    )
    assert result.returncode == 4
    assert result.stdout == ""
    assert "refusing to load" in result.stderr
    assert "weights/model.skops" in result.stderr
