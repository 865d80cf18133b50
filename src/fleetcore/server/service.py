"""The server's services, composed: :class:`Control` is the shared
:class:`~fleetcore.server.context.Context` with one service per area
attached, and their methods under the names the routes, the dashboard and
the tests call.

Every method blocks (SQLAlchemy and git): routes call them in worker
threads. Each change runs through :meth:`Context.change`: one transaction
with its audit entries, then the devices it moved are told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from fleetcore.plugin.manager import PluginManager
from fleetcore.server.actions import DeviceActions
from fleetcore.server.auth import Auth
from fleetcore.server.channels import ChannelPump
from fleetcore.server.context import Context
from fleetcore.server.devices import Devices
from fleetcore.server.enrollment import Enrollment
from fleetcore.server.events import EventHub
from fleetcore.server.mirror import Mirror
from fleetcore.server.policy import Policy
from fleetcore.server.response import BlastRadius
from fleetcore.server.rollouts import Rollouts
from fleetcore.server.store import Store
from fleetcore.server.tokens import Tokens
from fleetcore.server.views import Views


class Control(Context):
    """The server: the shared context, one service per area built on it,
    and each service's methods under one name (what the routes, the
    dashboard and the tests call)."""

    def __init__(
        self,
        store: Store,
        mirror: Mirror,
        pm: PluginManager,
        *,
        now: Callable[[], dt.datetime] | None = None,
        offline_after: float = 180.0,
        hub: EventHub | None = None,
        channels: Sequence[ChannelPump] = (),
        wake_rate: int = 0,
    ) -> None:
        super().__init__(
            store,
            mirror,
            pm,
            now=now,
            offline_after=offline_after,
            hub=hub,
            channels=channels,
            wake_rate=wake_rate,
        )
        self.auth = Auth(self)
        self.device_api = Devices(self, self.auth)
        self.enrollment = Enrollment(self, self.auth)
        self.policy = Policy(self)
        self.actions = DeviceActions(self)
        self.rollout_api = Rollouts(self)
        self.token_api = Tokens(self)
        self.views = Views(self)
        self.blast = BlastRadius(self)
        self._expose()

    def _fleet_status(self) -> dict[str, Any]:
        return {**self.views.fleet_status(), "blast_radius": self.blast.status()}

    def _expose(self) -> None:
        auth, dev, pol, ro, tok, views = (
            self.auth,
            self.device_api,
            self.policy,
            self.rollout_api,
            self.token_api,
            self.views,
        )
        # who is asking
        self.authenticate = auth.authenticate
        self.caller_for = auth.caller_for
        self.operator = auth.operator
        self.device_access = auth.device_access
        # devices
        self.not_modified = dev.not_modified
        self.poll_desired = dev.poll_desired
        self.write_device_batch = dev.write_batch
        self.enroll = self.enrollment.enroll
        self.rotate_credential = self.enrollment.rotate
        self.allow_reenroll = self.enrollment.allow_reenroll
        self.accept_device = self.enrollment.accept
        self.revoke_device = dev.revoke_device
        self.desired = self.states.desired
        self.etag = self.states.etag
        # fleet policy
        self.pin = pol.pin
        self.unpin = pol.unpin
        self.set_window = pol.set_window
        self.lock = pol.lock
        self.unlock = pol.unlock
        self.resume = pol.resume
        self.wake = self.actions.wake
        self.check_now = self.actions.check_now
        self.request_logs = self.actions.request_logs
        self.store_logs = self.actions.store_logs
        self.device_logs = self.actions.logs
        self.enter_safe_mode = self.actions.enter_safe_mode
        self.override = pol.override
        # rollouts
        self.start_rollout = ro.start
        self.rollout_action = ro.act
        # tokens
        self.create_token = tok.create
        self.create_enrollment_token = tok.create_enrollment
        self.tokens = tok.list
        self.revoke_token = tok.revoke
        # reads
        self.devices = views.devices
        self.device = views.device
        self.fleet_status = self._fleet_status
        self.audit_log = views.audit_log
        self.rollouts = views.rollouts
        self.rollout = views.rollout
        # blast-radius protection
        blast = self.blast
        self.blast_radius = blast.status
        self.set_blast_radius = blast.set_config
        self.incidents = blast.incidents
        self.incident = blast.incident
        self.halt_all = blast.halt_all
        self.resume_all = blast.resume_all
