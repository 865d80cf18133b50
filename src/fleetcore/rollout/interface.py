"""What a rollout-strategy plugin implements: may this device take this commit?

The answer must be a pure function of the device, the commit and the
strategy's options: the server asks it to decide, the agent asks it again to
double-check, and both must agree. It must also be monotone: a device that
is eligible at some step of a rollout stays eligible at every later step
(raising a percentage, promoting a segment), or devices would flap between
releases. :mod:`fleetcore.testing.contracts` checks both properties.

A strategy that rolls out to one site at a time::

    @frozen(kw_only=True)
    class SiteOptions:
        sites: tuple[str, ...] = ()

    class SiteStrategy:
        def __init__(self, options):
            self.sites = set(options.sites)

        def eligible(self, device, commit):
            return device.device_id.split("-")[0] in self.sites

    @hookimpl
    def fleetcore_register_rollout_strategies():
        yield RolloutStrategy(name="site", summary="Whole sites at a time",
                              config_type=SiteOptions, factory=SiteStrategy)

The names here are defined in :mod:`fleetcore.plugin.protocols` (values in
:mod:`fleetcore.model`) and exported by :mod:`fleetcore.plugin` too.
"""

from fleetcore.model import DeviceInfo, percentage_bucket
from fleetcore.plugin.protocols import Strategy

__all__ = ["DeviceInfo", "Strategy", "percentage_bucket"]
