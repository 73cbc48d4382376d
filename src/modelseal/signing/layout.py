"""The owner-signed in-toto layout that chains the steps, and its rotation to a new owner key
(see `modelseal.signing.provenance` for the whole design)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from in_toto.models.layout import Inspection, Layout, Step  # type: ignore[import-untyped]
from in_toto.models.metadata import Metablock  # type: ignore[import-untyped]

from modelseal.errors import SpecError
from modelseal.format.canonical import TIMESTAMP_FORMAT, canonical_json, load_json
from modelseal.keys.core import PublicKey, Signer
from modelseal.signing.evaluate_step import evaluation_rules, inspection_rules
from modelseal.signing.links import (
    INSPECTION_NAME,
    STEPS,
    InTotoSigner,
    in_toto_key,
    owner_key_id,
)

OPTIONAL_STEPS = ("train", "evaluate")  # present when the model was trained / evaluated

# -- layout -----------------------------------------------------------------------------------


def _rules(
    with_train: bool = True, with_evaluate: bool = False
) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
    """(expected_materials, expected_products) per step. Train products are named by their
    bundle path (`weights/...`) so that they can be matched by the package step. Without a train
    step (weights committed to the repository), the package step is where the weights enter."""
    weights_from_train = [
        ["MATCH", "weights/*", "WITH", "PRODUCTS", "FROM", "train"],
        ["DISALLOW", "weights/*"],
    ]
    return {
        "train": ([["ALLOW", "*"]], [["ALLOW", "*"]]),
        "package": (
            [*(weights_from_train if with_train else []), ["ALLOW", "*"]],
            [
                ["ALLOW", "model.pex"],
                ["ALLOW", "manifest.json"],
                ["ALLOW", "weights/*"],
                ["DISALLOW", "*"],
            ],
        ),
        # package -> evaluate -> sign: the evaluation ran on the packaged model.pex and weights,
        # and what sign signed must include the evaluation's record (evaluation_rules).
        **evaluation_rules(with_evaluate),
    }


def _expires_text(expires: dt.datetime) -> str:
    if expires.tzinfo is None:
        raise SpecError(
            what="the expiry has no time zone",
            where="layout",
            remedy="give it in UTC, e.g. 2027-11-26T00:00:00Z",
        )
    return expires.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def _layout_metablock(
    owner: Signer,
    functionaries: Mapping[str, Sequence[PublicKey]],
    thresholds: Mapping[str, int],
    expires: dt.datetime,
    readme: str,
) -> bytes:
    unknown = sorted(set(functionaries) - set(STEPS))
    if unknown or set(thresholds) - set(STEPS):
        raise SpecError(
            what=f"unknown step {(unknown or sorted(set(thresholds) - set(STEPS)))[0]!r}",
            where="layout",
            remedy=f"the steps are {', '.join(STEPS)}",
        )
    keys: dict[str, dict[str, Any]] = {}
    steps = []
    with_train = "train" in functionaries
    rules = _rules(with_train, "evaluate" in functionaries)
    for name in STEPS:
        if name in OPTIONAL_STEPS and name not in functionaries:
            continue  # Not trained by a recorded step, or no evaluation declared.
        publics = list(functionaries.get(name, ()))
        if not publics:
            raise SpecError(
                what=f"no functionary key for step {name!r}",
                where="layout",
                remedy=f"pass --step {name}=PUBLIC_KEY.pem",
            )
        threshold = thresholds.get(name, 1)
        if not 1 <= threshold <= len(publics):
            raise SpecError(
                what=f"threshold {threshold} for step {name!r} with {len(publics)} key(s)",
                where="layout",
                remedy="a threshold is between 1 and the number of the step's keys",
            )
        for public in publics:
            keys[public.key_id] = in_toto_key(public)
        materials, products = rules[name]
        steps.append(
            Step(
                name=name,
                pubkeys=sorted({p.key_id for p in publics}),
                threshold=threshold,
                expected_materials=materials,
                expected_products=products,
                expected_command=[],
            )
        )
    inspection = Inspection(
        name=INSPECTION_NAME,
        run=["true"],
        expected_materials=[
            ["MATCH", "*", "WITH", "PRODUCTS", "FROM", "package"],
            *inspection_rules("evaluate" in functionaries),
            ["ALLOW", "provenance/*"],
            ["ALLOW", "model.sig"],
            ["DISALLOW", "*"],
        ],
        expected_products=[["ALLOW", "*"]],
    )
    layout = Layout(
        steps=steps, inspect=[inspection], keys=keys, expires=_expires_text(expires), readme=readme
    )
    layout.validate()
    metablock = Metablock(signed=layout)
    owner_public = owner.public_key()
    metablock.create_signature(InTotoSigner(owner, owner_key_id(owner_public)))
    data: bytes = canonical_json(metablock.to_dict())
    return data


def create_layout(
    owner_signer: Signer,
    functionaries: Mapping[str, Sequence[bytes]],
    thresholds: Mapping[str, int] | None = None,
    *,
    expires: dt.datetime,
    readme: str = "modelseal: train -> package -> sign",
) -> bytes:
    """The owner-signed layout (canonical JSON bytes). `functionaries` maps each step to the
    PEM public keys allowed to sign its link; `thresholds` how many of them must (default 1)."""
    publics = {
        step: [PublicKey.from_pem(pem, source=f"--step {step}") for pem in pems]
        for step, pems in functionaries.items()
    }
    return _layout_metablock(owner_signer, publics, thresholds or {}, expires, readme)


def read_layout(data: bytes, source: str) -> Any:  # in_toto is untyped.
    try:
        document = load_json(data)
        return Metablock.from_dict(document)
    except Exception as e:  # in_toto raises many kinds for malformed input.
        raise SpecError(
            what=f"not an in-toto layout ({type(e).__name__})",
            where=source,
            remedy="pass the provenance/root.layout that `modelseal layout create` wrote",
        ) from None


def rotate_layout(
    old_layout: bytes,
    owner_signer: Signer,
    *,
    add: Mapping[str, Sequence[bytes]] | None = None,
    remove: Mapping[str, Sequence[str]] | None = None,
    thresholds: Mapping[str, int] | None = None,
    expires: dt.datetime | None = None,
    source: str = "layout",
) -> bytes:
    """A new layout from `old_layout`: keys added to or removed (by key id or its prefix) from
    steps, thresholds and expiry changed, re-signed by the current owner."""
    layout = read_layout(old_layout, source).signed
    functionaries: dict[str, list[PublicKey]] = {}
    current_thresholds: dict[str, int] = {}
    for step in layout.steps:
        functionaries[step.name] = [
            PublicKey.from_pem(layout.keys[k]["keyval"]["public"].encode("ascii"), source=source)
            for k in step.pubkeys
        ]
        current_thresholds[step.name] = step.threshold
    for step, pems in (add or {}).items():
        functionaries.setdefault(step, []).extend(
            PublicKey.from_pem(pem, source=f"--add {step}") for pem in pems
        )
    for step, prefixes in (remove or {}).items():
        for prefix in prefixes:
            before = functionaries.get(step, [])
            kept = [p for p in before if not p.key_id.startswith(prefix)]
            if len(kept) == len(before):
                raise SpecError(
                    what=f"no key of step {step!r} has an id starting with {prefix!r}",
                    where=source,
                    remedy="pass a key id (or its first 8 characters) the layout lists",
                )
            functionaries[step] = kept
    current_thresholds.update(thresholds or {})
    for step, keys in functionaries.items():
        current_thresholds[step] = min(current_thresholds.get(step, 1), max(len(keys), 1))
    when = expires
    if when is None:
        when = dt.datetime.strptime(layout.expires, TIMESTAMP_FORMAT).replace(
            tzinfo=dt.timezone.utc
        )
    return _layout_metablock(owner_signer, functionaries, current_thresholds, when, layout.readme)
