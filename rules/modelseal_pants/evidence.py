"""The package link, the bundle's SBOM and SLSA provenance, the vulnerability gate, and
`model.sig` with the sign link: one tool process, `modelseal seal`.

They ran as three processes (`link --step=package`, `attest`, `sign`) on the same inputs, one
after the other for the signature; each paid a Python start, the tool PEX's bootstrap and the
imports of cryptography, in-toto and securesystemslib, which is most of what a small change
next to big weights cost (docs/benchmarks.md, "Issue #17, third round"). The bytes are the same:
the command calls the functions the three steps called. The SBOM and SLSA provenance are
written with the package functionary's key before `model.sig`, so that the signature covers
them (docs/provenance.md explains the order). The lock goes in as the file it is, so the SBOM
takes each distribution's sha256 pins from it; with `[modelseal].advisories` the OSV records go
in too, and the process fails, naming the package, version, advisory and fixed version, before
anything is signed.

Signing processes are kept in pantsd's memory only (PER_RESTART_SUCCESSFUL: `key_invocation`),
never in the local or remote cache, as each of the three was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import AddPrefix, Digest, MergeDigests, PathGlobs, RemovePrefix
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.logging import LogLevel

from modelseal_pants.invocation import Seal
from modelseal_pants.signing_keys import PublicKeys, SigningKeys, key_invocation
from modelseal_pants.subsystem import ModelsealSubsystem

KNOWN_DIGESTS_PATH = ".modelseal/known-digests.json"
# Where the sealing step writes, beside the bundle's directory and not in it: Pants copies,
# instead of hard-linking, the input files below a directory that an output is written into,
# and a bundle's weights run to gigabytes (issue #17).
SIGNED_OUT = ".modelseal/out"


@dataclass(frozen=True)
class SealRequest:
    bundle: Digest  # the unsigned bundle, files at the root
    provenance: Digest  # provenance/: the layout, and the train and evaluate links if any
    bundle_name: str
    address: str
    known_digests: Digest  # KNOWN_DIGESTS_PATH
    materials: Digest  # the package link's materials: handler sources and lock, at repo paths
    material_paths: tuple[str, ...]
    lock: Digest  # the resolve's lock, at lock_path
    lock_path: str
    keys: SigningKeys
    publics: PublicKeys


@dataclass(frozen=True)
class Sealed:
    """`provenance/package.<keyid8>.link`, `provenance/sbom.cdx.json`,
    `provenance/build.intoto.jsonl`, `provenance/sign.<keyid8>.link` and `model.sig`, at the
    bundle's root."""

    digest: Digest


@rule(desc="Sealing a model bundle", level=LogLevel.DEBUG)
async def seal_bundle(request: SealRequest, subsystem: ModelsealSubsystem) -> Sealed:
    name, keys = request.bundle_name, request.keys
    bundle = await Get(Digest, MergeDigests([request.bundle, request.provenance]))
    inputs = [
        await Get(Digest, AddPrefix(bundle, name)),
        request.known_digests, request.materials, request.lock, request.publics.digest,
    ]
    advisories = subsystem.advisories or ""
    if advisories:
        records = await Get(
            Digest,
            PathGlobs(
                [f"{advisories}/**/*.json"],
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="`[modelseal].advisories`",
            ),
        )
        inputs.append(records)
    result = await Get(
        ProcessResult,
        key_invocation(
            keys,
            Seal(
                bundle=name, key=keys["package"], release_key=keys["release"],
                lock=request.lock_path, target=request.address,
                known_digests=KNOWN_DIGESTS_PATH,
                materials=request.material_paths,
                bundle_materials=("weights",),
                products=("manifest.json", "model.pex", "weights"),
                out_dir=SIGNED_OUT,
                advisories=advisories, fail_on=subsystem.fail_on_severity if advisories else "",
            ),
            await Get(Digest, MergeDigests(inputs)),
            f"Signing {request.address}: the package link, SBOM, SLSA provenance and model.sig",
            # Outside the bundle, so its weights are hard-linked in, not copied.
            output_files=(f"{SIGNED_OUT}/model.sig",),
            output_directories=(f"{SIGNED_OUT}/provenance",),
        ),
    )
    return Sealed(await Get(Digest, RemovePrefix(result.output_digest, SIGNED_OUT)))


def rules() -> Iterable[Rule]:
    return collect_rules()
