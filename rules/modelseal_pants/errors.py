"""Every error the plugin raises, by name, so that a caller (or a test) can tell a bad option from
a missing lockfile from an expired layout without matching message text.

They subclass `ValueError` because that is what these conditions raised before they had names:
code that caught `ValueError` keeps working. A field of a BUILD target that is wrong raises Pants'
own `InvalidFieldException` instead, which names the target and the field.
"""

from __future__ import annotations


class ModelsealPluginError(ValueError):
    """The base of the plugin's errors: one line naming what is wrong and how to fix it."""


class OptionError(ModelsealPluginError):
    """A `[modelseal]` option (or the environment variable it names) is missing or invalid."""


class SigningKeysError(OptionError):
    """The signing key references are configured only in part, or name an unset variable."""


class RuntimeDependencyError(OptionError):
    """`[modelseal].runtime` depends on a third-party package, which every model PEX would carry."""


class ToolVersionError(OptionError):
    """The modelseal tool answered in a format this plugin does not know: the `[modelseal]` tool
    installed is of another release than the plugin."""


class SourceDateEpochError(ModelsealPluginError):
    """SOURCE_DATE_EPOCH is set to something other than a whole number of seconds."""


class DirtyTreeError(ModelsealPluginError):
    """A release build from a work tree that differs from its commit, without `allow_dirty`."""


class LockfileError(ModelsealPluginError):
    """A model's resolve has no lockfile to record in the manifest."""


class LayoutExpiredError(ModelsealPluginError):
    """The layout would be expired from the day it is written (SOURCE_DATE_EPOCH + validity)."""


class UnownedImportError(ModelsealPluginError):
    """A model's closure imports a module its resolve lacks (unowned.py): model.pex could not
    import it, so nothing is built or signed."""


class ModelRunError(ModelsealPluginError):
    """The smoke test, evaluation or measurement of model.pex failed, or a gate did not hold:
    nothing is signed or written to dist/ (evaluation.py)."""
