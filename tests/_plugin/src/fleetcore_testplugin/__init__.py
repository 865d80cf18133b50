"""Records every lifecycle event as a JSON line in $FLEETCORE_TESTPLUGIN_EVENTS."""

from __future__ import annotations

import json
import os

from fleetcore.plugin import hookimpl


def _write(kind: str, **data: object) -> None:
    path = os.environ.get("FLEETCORE_TESTPLUGIN_EVENTS")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"event": kind, **data}, default=str) + "\n")


@hookimpl
def fleetcore_update_started(event):
    _write("update_started", to_commit=event.to_commit, reason=event.reason)


@hookimpl
def fleetcore_update_finished(record):
    _write("update_finished", to_commit=record.to_commit, result=record.result)


@hookimpl
def fleetcore_drift_found(report):
    _write("drift_found", findings=len(report.findings))


@hookimpl
def fleetcore_mode_changed(change):
    _write("mode_changed", old=change.old, new=change.new)
