"""`pants package` for `model_artifact`: runtime PEX + weights + manifest -> bundle (and tar).

The rule gathers what Pants already knows as digests (the weights' sha256 and sizes among them, so
nothing is hashed twice), and the modelseal tool decides every byte of the manifest and the tar.

`package_model_artifact` only sequences named steps, each a rule with its own request and result:

1. check      `CheckedModelArtifact`  (artifact.py: fields, weights or training, entry point, lock)
   and the imports of the model's closure (unowned.py: an import the resolve lacks is an error)
2. model.pex  `ModelPexRequest -> ModelPex`             (package_steps.py)
3. manifest   `ManifestRequest -> Manifest`             (package_steps.py; with the interface)
4. assemble   `UnsignedBundleRequest -> UnsignedBundle` (package_steps.py)
5. evaluate   `RunModelRequest -> ModelRun`             (evaluation.py: one process, the smoke
              test of every model; with a model_evaluation also evaluation.json and the
              measurement, whose numbers only the evaluate link records; then the manifest again
              with the evaluation's summary)
6. sign       `SignBundleRequest -> SignedBundle`     (signing.py: layout, links, model.sig)
7. archive    `ArchiveRequest -> BundleArchive`         (package_steps.py), only with the
              `archive` field or `[modelseal].archive`: the tar is a second read, hash and write
              of every weight (docs/benchmarks.md), and the directory alone is what `verify`,
              `model_signing` and the publishers take.
"""

from __future__ import annotations

import json

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_from_targets import (
    ChosenPythonResolve,
    ChosenPythonResolveRequest,
)
from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    PackageFieldSet,
)
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileEntry,
    MergeDigests,
    Snapshot,
)
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from modelseal_pants import artifact, evaluation, isolation, package_steps, unowned
from modelseal_pants.artifact import CheckedModelArtifact, ModelArtifactFieldSet
from modelseal_pants.build_info import (
    BuildInfo,
    BuildInfoRequest,
    WorktreeChecked,
    WorktreeCheckRequest,
)
from modelseal_pants.errors import UnownedImportError
from modelseal_pants.evaluation import (
    MEASUREMENTS_PATH,
    DeclaredEvaluation,
    EvaluationRequest,
    ModelRun,
    RunModelRequest,
)
from modelseal_pants.package_steps import (
    ArchiveRequest,
    BundleArchive,
    Manifest,
    ManifestRequest,
    ModelPex,
    ModelPexRequest,
    UnsignedBundle,
    UnsignedBundleRequest,
    file_rows,
    manifest_spec,
)
from modelseal_pants.signing import (
    EvaluationForSigning,
    PublicKeys,
    PublicKeysRequest,
    SignBundleRequest,
    SignedBundle,
    SigningKeys,
    SigningKeysRequest,
)
from modelseal_pants.subsystem import ModelsealSubsystem
from modelseal_pants.tool import RuntimeSources, RuntimeSourcesRequest
from modelseal_pants.unowned import UnownedImports, UnownedImportsRequest


async def _package_materials(
    checked: CheckedModelArtifact, runtime: RuntimeSources
) -> tuple[Digest, tuple[str, ...]]:
    """What the PEX was made of, for the package link: the handler's sources, the modelseal
    runtime, the lock."""
    lock = await Get(Digest, CreateDigest([checked.lock]))
    digest = await Get(Digest, MergeDigests([lock, checked.sources.digest, runtime.digest]))
    runtime_files = await Get(Snapshot, Digest, runtime.digest)
    return digest, (checked.lock.path, *checked.sources.files, *runtime_files.files)


@rule(desc="Packaging a model artifact", level=LogLevel.DEBUG)
async def package_model_artifact(
    fs: ModelArtifactFieldSet, subsystem: ModelsealSubsystem
) -> BuiltPackage:
    """The steps, in order: check, build model.pex, write the manifest, assemble, sign (train,
    package and sign links, layout, model.sig: `signing.sign_bundle`), archive."""
    # Together, first: the processes that run in every session and need nothing from each other.
    # The check reads the weights (`modelseal intake`), the build info runs git, and the public
    # keys are exported (signing, at the end, would otherwise wait for that export after the smoke
    # test; this session's export is memoized and signing takes it).
    checked, runtime, info, keys, declared, _ = await MultiGet(
        Get(CheckedModelArtifact, ModelArtifactFieldSet, fs),
        Get(RuntimeSources, RuntimeSourcesRequest()),
        Get(BuildInfo, BuildInfoRequest()),
        Get(SigningKeys, SigningKeysRequest()),
        Get(DeclaredEvaluation, EvaluationRequest(fs.address)),
        Get(PublicKeys, PublicKeysRequest()),
    )
    unowned, resolve = await MultiGet(
        Get(UnownedImports, UnownedImportsRequest(checked.roots, str(fs.address))),
        Get(ChosenPythonResolve, ChosenPythonResolveRequest(checked.roots)),
    )
    if unowned.imports:
        raise UnownedImportError(
            unowned.message(str(fs.address), {resolve.name: resolve.lockfile.url})
        )
    await Get(
        WorktreeChecked,
        WorktreeCheckRequest(info.dirty, info.dirty_sha256, keys.development),
    )
    pex = await Get(ModelPex, ModelPexRequest(fs, checked.roots, runtime.digest))
    weight_entries, pex_entries = await MultiGet(
        Get(DigestEntries, Digest, checked.weights.digest), Get(DigestEntries, Digest, pex.digest)
    )
    files = file_rows(weight_entries, "weights/") + file_rows(pex_entries, "")
    spec = manifest_spec(fs, checked, pex, files, info, keys.development)
    if declared.interface:
        spec["interface"] = json.loads(declared.interface)
    spec_bytes = json.dumps(spec, sort_keys=True).encode()
    manifest = await Get(Manifest, ManifestRequest(spec_bytes, fs.address, pex.digest))
    unsigned = await Get(
        UnsignedBundle, UnsignedBundleRequest(checked.weights.digest, pex.digest, manifest.digest)
    )
    # The smoke test, at least; with an evaluation, also it and the measurement.
    evaluated = await Get(
        ModelRun,
        RunModelRequest(
            fs.address, unsigned.digest, declared,
            InterpreterConstraints(pex.interpreter_constraints), resolve.name,
            resolve.lockfile.url,
        ),
    )
    evaluation = None
    if declared.declared:
        final = await Get(
            Manifest, ManifestRequest(spec_bytes, fs.address, pex.digest, evaluated.evaluation)
        )
        unsigned = await Get(
            UnsignedBundle,
            UnsignedBundleRequest(
                checked.weights.digest, pex.digest, final.digest, evaluated.evaluation
            ),
        )
        evaluation = EvaluationForSigning(
            await Get(Digest, MergeDigests([declared.data, evaluated.measurements])),
            declared.data_paths,
            MEASUREMENTS_PATH,
        )
    materials, material_paths = await _package_materials(checked, runtime)
    signed = await Get(
        SignedBundle,
        SignBundleRequest(
            bundle=unsigned.digest,
            bundle_name=fs.bundle_name,
            address=str(fs.address),
            source_date_epoch=info.source_date_epoch,
            train_inputs=checked.weights.train_inputs,
            train_materials=checked.weights.train_materials,
            train_products=tuple(
                f"weights/{e.path}" for e in weight_entries if isinstance(e, FileEntry)
            ),
            imported_train_link=checked.weights.imported_link,
            package_materials=materials,
            package_material_paths=material_paths,
            known_digests=unsigned.known_digests,
            evaluation=evaluation,
            lock=await Get(Digest, CreateDigest([checked.lock])),
            lock_path=checked.lock.path,
        ),
    )
    bundle = await Get(Digest, AddPrefix(signed.digest, fs.bundle_name))
    out_dir = fs.output_path.value_or_default(file_ending=None)
    # The directory itself is an artifact, so `package` clears it: no stale file survives.
    artifacts = [BuiltPackageArtifact(f"{out_dir}/{fs.bundle_name}")]
    wanted = fs.archive.value if fs.archive.value is not None else subsystem.archive
    if wanted:
        archive = await Get(
            BundleArchive,
            ArchiveRequest(bundle, fs.bundle_name, info.source_date_epoch, fs.address),
        )
        bundle = await Get(Digest, MergeDigests([bundle, archive.digest]))
        artifacts.append(BuiltPackageArtifact(f"{out_dir}/{archive.name}"))
    result = await Get(Digest, AddPrefix(bundle, out_dir))
    return BuiltPackage(result, tuple(artifacts))


def rules() -> list[Rule | UnionRule]:
    return [
        *artifact.rules(),
        *package_steps.rules(),
        *evaluation.rules(),
        *isolation.rules(),
        *unowned.rules(),
        *collect_rules(),
        UnionRule(PackageFieldSet, ModelArtifactFieldSet),
    ]
