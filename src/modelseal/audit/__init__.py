"""Reproducibility audits: rebuilding a commit and comparing bundles file by file.
"""
