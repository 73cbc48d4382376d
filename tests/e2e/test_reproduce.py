"""`pants reproduce`: two isolated, uncached builds of the working tree, compared (issue #6). One
`./pants reproduce` run covers a model that reproduces and one whose training does not."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.audit import add_models, environment, require_diffoscope
from e2e.repo import Builds, clone, run_pants

NOT_REPRODUCED = 7


def test_reproduce_passes_deterministic_models_and_names_what_differs(
    builds: Builds, tmp_path: Path
) -> None:
    require_diffoscope()
    repo = clone(tmp_path / "repo")
    add_models(repo, nondeterministic=True)
    # An uncommitted change is part of what is reproduced: the goal builds the working tree.
    (repo / "examples" / "tiny" / "extra.bin").write_bytes(b"not committed yet")
    result = run_pants(repo, "reproduce", "examples/tiny:model", "examples/nondet:model",
                       env=environment(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == NOT_REPRODUCED, output[-5000:]
    assert "✓ examples.tiny/model/tiny-0.1.0.tar:" in result.stdout, output[-5000:]
    assert "✕ examples.nondet/model/nondet-0.1.0.tar: not reproducible" in result.stdout
    assert "weights/noise.bin: first build sha256" in result.stdout
    assert "1 of 2 bundle(s) differ between two builds" in result.stderr

    report = repo / "dist" / "reproduce"
    tiny = json.loads((report / "examples.tiny_model_tiny-0.1.0.json").read_text())
    assert tiny["reproduced"] is True
    assert "weights/extra.bin" in tiny["compared"]
    nondet = json.loads((report / "examples.nondet_model_nondet-0.1.0.json").read_text())
    assert nondet["reproduced"] is False
    paths = {d["path"] for d in nondet["differences"]}
    # The training step's random output, and the manifest that records its digest.
    assert paths == {"weights/noise.bin", "manifest.json"}, nondet["differences"]
    diffoscope = report / "examples.nondet_model_nondet-0.1.0" / "diffoscope.txt"
    assert "noise.bin" in diffoscope.read_text()
