"""What a secrets provider implements: putting secrets into a release.

Providers run after the release is verified and before it is validated, in
the order the role lists them (later ones override earlier keys). A provider
may write files into the release folder (mode 0600) and return environment
values, which the agent writes to the release's env file for the activator.

Secrets must never reach logs, history, status reports or error messages:
raise errors that name the file or path and the reason, never the value.

In managed mode ``ctx.server`` is the control server as a provider may use
it (:class:`ControlServerSecrets`: the device's own secrets, nothing else);
it is None in git-only mode.

The names here are defined in :mod:`fleetcore.plugin.protocols` and exported
by :mod:`fleetcore.plugin` too.
"""

from fleetcore.model import DeviceInfo
from fleetcore.plugin.protocols import ControlServerSecrets, SecretsContext, SecretsProviderImpl

__all__ = ["ControlServerSecrets", "DeviceInfo", "SecretsContext", "SecretsProviderImpl"]
