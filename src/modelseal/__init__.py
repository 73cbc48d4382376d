"""modelseal: portable, signed, byte-reproducible model artifacts.

The core library and the `modelseal` command line. It imports nothing from Pants, so the same code
runs inside the build's sandbox and, as `modelseal.pex`, on any deployment host with CPython 3.9+.
"""

from modelseal._version import __version__

__all__ = ["__version__"]
