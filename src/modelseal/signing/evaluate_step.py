"""The in-toto rules of the `evaluate` step, which sits between `package` and `sign` when a model
declares an evaluation (docs/evaluation.md).

The evaluate link's materials are the packaged `model.pex` and weights (which must be exactly the
`package` step's products) and the evaluation data (under `evaluation-data/`, recorded as they
were); its one product is `evaluation.json`. The `sign` step must then have signed that very
`evaluation.json` (REQUIRE, then MATCH against the evaluate step's products), so a bundle whose
evaluation record was dropped or replaced fails `in-toto-verify` (the file inspection REQUIREs it
too: the sign link's materials alone say what was signed, not what is still there), as does one
whose layout has an evaluate step but no link for it. The link's byproducts are what the
measurement proved: per measured gate, the bound it held under, which is the same on every
passing run (the raw numbers vary, and the link is in the byte-reproducible bundle).
"""

from __future__ import annotations

__all__ = ["EVALUATION_DATA_DIR", "EVALUATION_PATH", "evaluation_rules", "inspection_rules"]

from modelseal.format.fields import EVALUATION_PATH

EVALUATION_DATA_DIR = "evaluation-data"

Rules = list[list[str]]


def evaluation_rules(with_evaluate: bool) -> dict[str, tuple[Rules, Rules]]:
    """(expected_materials, expected_products) of `evaluate` and `sign`."""
    if not with_evaluate:
        return {
            "sign": (
                [["MATCH", "*", "WITH", "PRODUCTS", "FROM", "package"], ["DISALLOW", "*"]],
                [["DISALLOW", "*"]],
            )
        }
    return {
        "evaluate": (
            [
                ["MATCH", "model.pex", "WITH", "PRODUCTS", "FROM", "package"],
                ["MATCH", "weights/*", "WITH", "PRODUCTS", "FROM", "package"],
                ["ALLOW", f"{EVALUATION_DATA_DIR}/*"],
                ["DISALLOW", "*"],
            ],
            [["REQUIRE", EVALUATION_PATH], ["ALLOW", EVALUATION_PATH], ["DISALLOW", "*"]],
        ),
        "sign": (
            [
                ["REQUIRE", EVALUATION_PATH],
                ["MATCH", EVALUATION_PATH, "WITH", "PRODUCTS", "FROM", "evaluate"],
                ["MATCH", "*", "WITH", "PRODUCTS", "FROM", "package"],
                ["DISALLOW", "*"],
            ],
            [["DISALLOW", "*"]],
        ),
    }


def inspection_rules(with_evaluate: bool) -> Rules:
    """What the file inspection requires and accepts beyond the package step's products: the
    evaluation record must still be in the bundle (REQUIRE: a MATCH alone accepts its absence)
    and be the one the evaluate step produced."""
    if not with_evaluate:
        return []
    return [
        ["REQUIRE", EVALUATION_PATH],
        ["MATCH", EVALUATION_PATH, "WITH", "PRODUCTS", "FROM", "evaluate"],
    ]
