"""The bundle's formats: canonical JSON, the manifest and the bundle spec, digests, the tar
writer and reader, directory walks. Standard library only: `model.pex` embeds parts of it.
"""
