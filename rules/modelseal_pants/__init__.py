"""The modelseal Pants backend: target types and thin rules that run the modelseal tool.

Every byte-level decision lives in `src/modelseal`; this package only gathers digests from the
build graph and runs the tool in the sandbox. It imports nothing beyond Pants.
"""
