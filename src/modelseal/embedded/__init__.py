"""What runs inside every model's `model.pex`: the runtime and training entry points.
Standard library only (and only the standard-library layers below it).
"""
