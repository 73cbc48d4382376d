"""Distribution through OCI registries: a bundle as a CNCF ModelPack artifact
(docs/distribution.md)."""
