"""What a secrets provider implements: putting secrets into a release.

Providers run after the release is verified and before it is validated, in
the order the role lists them (later ones override earlier keys). A provider
may write files into the release folder (mode 0600) and return environment
values, which the agent writes to the release's env file for the activator.

Secrets must never reach logs, history, status reports or error messages:
raise errors that name the file or path and the reason, never the value.

The names here are defined in :mod:`fleetcore.plugin.protocols`.
"""

from fleetcore.model import DeviceInfo
from fleetcore.plugin.protocols import SecretsContext, SecretsProviderImpl

__all__ = ["DeviceInfo", "SecretsContext", "SecretsProviderImpl"]
