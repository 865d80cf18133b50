"""``fleetcore fleet``: operators drive the control server.

The group is in ``group.py``; each module here adds the commands of one area
(status, device, rollouts and watch, policy, access, actions, branches,
incidents). Exit codes: 0 done, 1 refused or failed, 2 bad usage or input, 5 server
unreachable.
"""

from fleetcore.cli.fleet import (
    access,
    actions,
    branches,
    device,
    incidents,
    policy,
    rollouts,
    status,
    watch,
)
from fleetcore.cli.fleet.group import fleet

__all__ = [
    "access",
    "actions",
    "branches",
    "device",
    "fleet",
    "incidents",
    "policy",
    "rollouts",
    "status",
    "watch",
]
