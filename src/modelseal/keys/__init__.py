"""Keys by reference: the signing interface, PEM file keys, PKCS#11 tokens, the development keyring.
"""
