"""Where `modelseal run`'s own arguments end and the model's begin (standard library only, so
that `modelseal --version` imports nothing more)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["split_passthrough"]


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """(the arguments for modelseal, those after the first `--` for `run`): argparse's own `--`
    handling differs between Python versions, and the PEX's arguments must pass through intact.
    Only `run` takes them; for any other command the argv is returned unchanged."""
    args = list(argv)
    if "--" not in args:
        return args, None
    head, tail = args[: args.index("--")], args[args.index("--") + 1 :]
    command = next((a for a in head if not a.startswith("-")), None)
    if command != "run":
        return args, None
    return head, tail
