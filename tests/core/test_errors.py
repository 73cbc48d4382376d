from __future__ import annotations

import pytest

from modelseal.errors import IntegrityError, ModelsealError, SpecError


def test_message_reads_where_what_remedy() -> None:
    error = ModelsealError(what="not found", where="spec.json", remedy="pass the spec")
    assert str(error) == "spec.json: not found. Pass the spec"
    assert (error.what, error.where, error.remedy) == ("not found", "spec.json", "pass the spec")


def test_without_remedy() -> None:
    assert str(SpecError(what="bad", where="x", remedy="")) == "x: bad."


@pytest.mark.parametrize(
    ("error", "code"), [(ModelsealError, 1), (SpecError, 3), (IntegrityError, 4)]
)
def test_exit_codes(error: type[ModelsealError], code: int) -> None:
    assert error.exit_code == code
    assert error(what="w", where="x", remedy="r").exit_code == code
    assert issubclass(error, ModelsealError)
