"""What signs a bundle: `model.sig` (OpenSSF Model Signing), in-toto layouts and links, and
attestations.
"""
