"""The one version of modelseal and modelseal-pants, which are released together.

This file is also a Pants BUILD prelude (`[GLOBAL].build_file_prelude_globs`), so the
`python_distribution` targets read `__version__` from it: it must stay a single assignment with no
imports.
"""

__version__ = "0.1.0"
