"""A Pants 2.17 lint backend that runs import-linter's `lint-imports` (Pants has none)."""
