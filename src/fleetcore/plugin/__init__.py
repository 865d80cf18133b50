"""The plugin system: the hook contract, the records, and the manager.

Plugin authors need two names from here::

    from fleetcore.plugin import hookimpl
    from fleetcore.plugin.types import Check, Finding
"""

import pluggy

from fleetcore.plugin.hookspecs import PROJECT_NAME

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["hookimpl"]
