"""`python model.pex info|predict`, with a bundle built by hand and a handler on sys.path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import modelseal
from core.bundles import write_bundle
from core.interpreters import SUPPORTED_MINORS, find_python
from modelseal.embedded import runtime

HANDLER = """
import json
import os
import sys

sys.stderr.write("handler imported\\n")


class Model:
    @staticmethod
    def load(weights_dir):
        print("loading")  # Must not reach stdout.
        with open(os.path.join(weights_dir, "model.json")) as f:
            return json.load(f)

    @staticmethod
    def predict(model, inputs):
        return {"scores": [model["w"] * x for x in inputs["x"]], "label": "é"}
"""

MODULE_HANDLER = """
def load(weights_dir):
    return weights_dir


def predict(model, inputs):
    return {"weights_dir": model, "inputs": inputs}
"""


W2 = b'{"w": 2}'
W3 = b'{"w": 3}'


class Bundle:
    def __init__(self, root: Path, handlers: Path, module: str) -> None:
        self.root = root
        self.handlers = handlers
        self.module = module
        self.pex = root / "model.pex"


@pytest.fixture
def bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Bundle:
    # A module name per test: an import in one test must not satisfy the next.
    module = "handler_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / f"{module}.py").write_text(HANDLER)
    (handlers / f"{module}_mod.py").write_text(MODULE_HANDLER)
    root = tmp_path / "iris-1.0.0"
    write_bundle(
        root,
        {"model.pex": b"not really a pex", "weights/model.json": b'{"w": 2}'},
        entry_point=f"{module}:Model",
    )
    monkeypatch.syspath_prepend(str(handlers))
    monkeypatch.setenv("PEX", str(root / "model.pex"))
    return Bundle(root, handlers, module)


def _run(
    argv: list[str], stdin: bytes, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = runtime.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, out, err = _run(["predict"], b'{"x": [1, 2.5]}', monkeypatch, capsys)
    assert (code, out) == (0, '{"label":"é","scores":[2,5.0]}\n'), err
    assert err == "handler imported\nloading\n"


def test_handler_may_be_a_module(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    write_bundle(
        bundle.root,
        {"model.pex": b"not really a pex", "weights/model.json": b'{"w": 2}'},
        entry_point=f"{bundle.module}_mod",
    )
    code, out, err = _run(["predict"], b"[1]", monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out) == {"weights_dir": str(bundle.root / "weights"), "inputs": [1]}


def test_refuses_changed_weights_before_importing_the_handler(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    (bundle.root / "weights/model.json").write_bytes(b'{"w": 3}')
    code, out, err = _run(["predict"], b'{"x": [1]}', monkeypatch, capsys)
    assert (code, out) == (4, "")
    assert err == (
        "model.pex: refusing to load: weights/model.json: sha256 expected "
        f"{hashlib.sha256(W2).hexdigest()} found "
        f"{hashlib.sha256(W3).hexdigest()}; the bundle was changed after "
        "packaging: re-package or re-download it\n"
    )
    assert bundle.module not in sys.modules


def test_refuses_missing_weights(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    (bundle.root / "weights/model.json").unlink()
    code, _, err = _run(["predict"], b"{}", monkeypatch, capsys)
    assert code == 4
    assert err.startswith("model.pex: refusing to load: weights/model.json: missing")


@pytest.mark.parametrize("kind", ["unlisted file", "symlinked file", "symlinked directory"])
def test_refuses_what_the_manifest_does_not_list_in_weights(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path, kind: str
) -> None:
    # A handler loads its weights directory as a whole: anything there it would load unchecked.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.pkl").write_bytes(b"not verified")
    weights = bundle.root / "weights"
    if kind == "unlisted file":
        (weights / "extra.pkl").write_bytes(b"not verified")
        expected = "weights/extra.pkl: present in the bundle but not listed in the manifest"
    elif kind == "symlinked file":
        (weights / "extra.pkl").symlink_to(outside / "evil.pkl")
        expected = "a symbolic link cannot be part of a bundle"
    else:
        (weights / "more").symlink_to(outside)
        expected = "a symbolic link cannot be part of a bundle"
    code, out, err = _run(["predict"], b'{"x": [1]}', monkeypatch, capsys)
    assert (code, out) == (4, "")
    assert err.startswith("model.pex: refusing to load: ") and expected in err
    assert bundle.module not in sys.modules


def test_only_weights_are_checked(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # The PEX is running: hashing it again proves nothing the signature check does not.
    bundle.pex.write_bytes(b"changed")
    code, _, err = _run(["predict"], b'{"x": []}', monkeypatch, capsys)
    assert code == 0, err


def test_falls_back_to_argv0(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("PEX")
    monkeypatch.setattr(sys, "argv", [str(bundle.pex), "info"])
    code, out, _ = _run(["info"], b"", monkeypatch, capsys)
    assert code == 0
    assert out.startswith("iris 1.0.0\n")


def test_info(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, out, err = _run(["info"], b"", monkeypatch, capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "iris 1.0.0"
    assert f"  entry point  {bundle.module}:Model" in lines
    assert f"   8  {hashlib.sha256(W2).hexdigest()[:12]}  weights/model.json" in lines, out
    assert "metrics" in lines
    assert "lineage" in lines
    assert bundle.module not in sys.modules


def test_no_manifest(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("PEX", str(bundle.root.parent / "model.pex"))
    code, _, err = _run(["info"], b"", monkeypatch, capsys)
    assert code == 4
    assert err == (
        f"model.pex: refusing to load: {bundle.root.parent / 'manifest.json'}: missing: "
        "model.pex runs from its bundle directory; run the model.pex inside the bundle "
        "directory, next to manifest.json and weights/, not a copy of it\n"
    )


def test_invalid_manifest(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (bundle.root / "manifest.json").write_bytes(b"{}")
    code, _, err = _run(["info"], b"", monkeypatch, capsys)
    assert code == 3
    assert err.startswith(
        f"model.pex: error: {bundle.root / 'manifest.json'}: schema: required field is missing."
    )


@pytest.mark.parametrize(
    ("entry_point", "what"),
    [
        ("no_such_module_xyz:Model", "no module named 'no_such_module_xyz'"),
        ("no_such_package_xyz.handler:Model", "no module named 'no_such_package_xyz'"),
        ("{module}:Nope", "no attribute 'Nope'"),
        ("{module}:Model.load", "the handler has no callable load()"),
        ("json", "the handler has no callable predict()"),
    ],
)
def test_bad_entry_point(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any, entry_point: str, what: str
) -> None:
    entry_point = entry_point.format(module=bundle.module)
    write_bundle(
        bundle.root,
        {"model.pex": b"not really a pex", "weights/model.json": b'{"w": 2}'},
        entry_point=entry_point,
    )
    code, out, err = _run(["predict"], b"{}", monkeypatch, capsys)
    assert (code, out) == (3, "")
    assert err.replace("handler imported\n", "") == (
        f"model.pex: error: entry point {entry_point!r}: {what}. Fix the model_artifact "
        "target's entry_point, or the handler it names, and re-package\n"
    )


def test_handler_import_errors_are_not_hidden(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    (bundle.handlers / f"{bundle.module}.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{}")))
    with pytest.raises(ModuleNotFoundError, match="missing_dependency_xyz"):
        runtime.main(["predict"])


@pytest.mark.parametrize(
    ("stdin", "what"),
    [
        (b"{", "Expecting property name enclosed in double quotes"),
        (b"[NaN]", "NaN is not a JSON value"),
        (b"\xff", "not UTF-8: byte 0 is invalid"),
    ],
)
def test_invalid_input(
    bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any, stdin: bytes, what: str
) -> None:
    code, out, err = _run(["predict"], stdin, monkeypatch, capsys)
    assert (code, out) == (3, "")
    assert err.startswith(f"model.pex: error: stdin: the input is not valid JSON: {what}")


def test_outputs_must_be_json(bundle: Bundle, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (bundle.handlers / f"{bundle.module}.py").write_text(
        "class Model:\n"
        "    load = staticmethod(lambda weights_dir: None)\n"
        "    predict = staticmethod(lambda model, inputs: {'p': float('nan')})\n"
    )
    code, out, err = _run(["predict"], b"{}", monkeypatch, capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"model.pex: error: entry point '{bundle.module}:Model': predict() returned a value JSON "
        "cannot hold: p: nan is not a finite number, which JSON cannot hold. Return lists, dicts, "
        "strings, finite numbers, booleans and None\n"
    )


def test_no_command(bundle: Bundle, capsys: Any) -> None:
    assert runtime.main([]) == 2
    assert "usage: model.pex" in capsys.readouterr().err


ALLOWED = {
    "modelseal",
    "modelseal._version",
    "modelseal.embedded",
    "modelseal.embedded.runtime",
    "modelseal.format",
    "modelseal.format.manifest",
    "modelseal.format.fields",
    "modelseal.format.interface",
    "modelseal.embedded.schema",
    "modelseal.format.canonical",
    "modelseal.format.digests",
    "modelseal.format.tree",
    "modelseal.errors",
}


def _source_root() -> str:
    return str(Path(modelseal.__file__).parent.parent)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is new in 3.10")
def test_runtime_imports_only_the_standard_library() -> None:
    probe = (
        "import sys; before = set(sys.modules); import modelseal.embedded.runtime; "
        "new = sorted(set(sys.modules) - before); "
        "print('\\n'.join(m for m in new if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {_source_root()!r}); " + probe,
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert set(run.stdout.split()) == ALLOWED


@pytest.mark.parametrize("minor", SUPPORTED_MINORS, ids=lambda m: f"cpython3.{m}")
def test_predict_on(minor: int, bundle: Bundle) -> None:
    python = find_python(minor)
    assert python, f"CPython 3.{minor} is missing: install it (e.g. `pyenv install 3.{minor}`)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([_source_root(), str(bundle.handlers)]),
        "PEX": str(bundle.pex),
        "LC_ALL": "C",
    }
    script = "import sys; from modelseal.embedded.runtime import main; sys.exit(main())"
    run = subprocess.run(
        [python, "-c", script, "predict"], input=b'{"x": [3]}', capture_output=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == '{"label":"é","scores":[6]}\n'.encode()
    (bundle.root / "weights/model.json").write_bytes(b'{"w": 9}')
    run = subprocess.run(
        [python, "-c", script, "predict"], input=b"{}", capture_output=True, env=env
    )
    assert run.returncode == 4
    assert run.stderr.startswith(b"model.pex: refusing to load: weights/model.json: sha256")
    assert b"handler imported" not in run.stderr
