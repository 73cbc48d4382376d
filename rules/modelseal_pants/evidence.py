"""The bundle's SBOM and SLSA provenance (`modelseal attest`), and the vulnerability gate.

Run with the package functionary's key, beside the links and before `model.sig`, so that the
signature covers both files (docs/provenance.md explains the order). The lock goes in as the
file it is, so the SBOM takes each distribution's sha256 pins from it; with
`[modelseal].advisories` the OSV records go in too, and the process fails, naming the package,
version, advisory and fixed version, before anything is signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import AddPrefix, Digest, MergeDigests, PathGlobs, RemovePrefix
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.logging import LogLevel

from modelseal_pants.invocation import Attest
from modelseal_pants.signing_keys import PublicKeys, SigningKeys, key_invocation
from modelseal_pants.subsystem import ModelsealSubsystem

KNOWN_DIGESTS_PATH = ".modelseal/known-digests.json"
# Where the SBOM/provenance and the signing steps write, beside the bundle's directory and not
# in it: Pants copies, instead of hard-linking, the input files below a directory that an
# output is written into, and a bundle's weights run to gigabytes (issue #17).
SIGNED_OUT = ".modelseal/out"


@dataclass(frozen=True)
class EvidenceRequest:
    bundle: Digest  # the unsigned bundle, files at the root
    bundle_name: str
    address: str
    known_digests: Digest  # KNOWN_DIGESTS_PATH
    lock: Digest  # the resolve's lock, at lock_path
    lock_path: str
    keys: SigningKeys
    publics: PublicKeys


@dataclass(frozen=True)
class Evidence:
    """`provenance/sbom.cdx.json` and `provenance/build.intoto.jsonl`, at the bundle's root."""

    digest: Digest


@rule(desc="Writing the SBOM and SLSA provenance", level=LogLevel.DEBUG)
async def write_evidence(request: EvidenceRequest, subsystem: ModelsealSubsystem) -> Evidence:
    name = request.bundle_name
    inputs = [
        await Get(Digest, AddPrefix(request.bundle, name)),
        request.known_digests, request.lock, request.publics.digest,
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
            request.keys,
            Attest(
                bundle=name, key=request.keys["package"], lock=request.lock_path,
                target=request.address, known_digests=KNOWN_DIGESTS_PATH,
                advisories=advisories, fail_on=subsystem.fail_on_severity if advisories else "",
                out_dir=SIGNED_OUT,
            ),
            await Get(Digest, MergeDigests(inputs)),
            f"Writing the SBOM and SLSA provenance of {request.address}",
            # Outside the bundle, so its weights are hard-linked in, not copied (SignBundle).
            output_directories=(f"{SIGNED_OUT}/provenance",),
        ),
    )
    return Evidence(await Get(Digest, RemovePrefix(result.output_digest, SIGNED_OUT)))


def rules() -> Iterable[Rule]:
    return collect_rules()
