"""The complete platforms the `modelseal` tool PEX is built for, in one list: src/modelseal/BUILD
builds the PEX for them and tests/core/BUILD gives them to the test that checks its wheels, so the
two cannot drift. A Pants BUILD prelude (`[GLOBAL].build_file_prelude_globs`): plain assignments,
no imports, and immutable values (Pants hashes them: a tuple, not a list).

The oldest host of each kind, for CPython 3.9-3.13: Linux x86_64 and aarch64 with glibc 2.17 or
newer (manylinux2014), macOS arm64 from 11.0 and x86_64 from 10.13 (3rdparty/platforms/BUILD says
how each file is made)."""

MODELSEAL_PEX_PLATFORMS = tuple(
    f"3rdparty/platforms:cpython{minor}-{platform}"
    for minor in ("39", "310", "311", "312", "313")
    for platform in (
        "manylinux2014_x86_64",
        "manylinux2014_aarch64",
        "macosx_11_0_arm64",
        "macosx_10_13_x86_64",
    )
)
