"""What ``fleetcore agent status`` shows (and, later, what the device reports)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleetcore.agent.state import StateStore, history_json
from fleetcore.config.agent import AgentConfig
from fleetcore.http import redact


def status_report(config: AgentConfig) -> dict[str, Any]:
    store = StateStore(config.state_dir)
    state = store.load() if store.state_file.exists() else None
    current = store.current()
    status = "unknown"
    if state is not None:
        status = "safe_mode" if state.mode == "safe_mode" else state.status
    if state is not None and state.in_flight is not None:
        status = "updating"
    reason = state.status_reason if state else ""
    # Drift that nothing fixed: the device runs, but not as released.
    if state is not None and status == "healthy" and state.drift == "left":
        status, reason = "degraded", state.drift_reason
    stale = _stale(config, state.desired_issued_at if state else None)
    if stale:
        status, reason = "stale_desired_state", stale
    return {
        "device_id": config.device_id,
        "role": config.role,
        "segment": config.segment,
        **management(config),
        "commit": store.commit_of(current),
        "release": current,
        "previous_commit": store.commit_of(store.previous()),
        "status": status,
        "status_reason": reason,
        "desired_issued_at": _iso(state.desired_issued_at) if state else None,
        "mode": state.mode if state else "normal",
        "mode_since": state.mode_since.isoformat() if state and state.mode_since else None,
        "mode_reason": state.mode_reason if state else "",
        "desired_commit": state.desired_commit if state else None,
        "desired_reason": state.desired_reason if state else "",
        "pending_commit": state.pending_commit if state else None,
        "last_check": state.last_check.isoformat() if state and state.last_check else None,
        "last_update": history_json(state.last_update) if state and state.last_update else None,
        "consecutive_failures": state.consecutive_failures if state else 0,
        "network": state.network if state else "online",
        "network_since": _iso(state.network_since) if state else None,
        "unreachable_since": _iso(state.unreachable_since) if state else None,
        "last_contact": _iso(state.last_contact) if state else None,
        "drift": state.drift if state else "unknown",
        "drift_reason": state.drift_reason if state else "",
        "last_light_check": _iso(state.last_light_check) if state else None,
        "last_deep_check": _iso(state.last_deep_check) if state else None,
    }


def management(config: AgentConfig) -> dict[str, str]:
    """Which mode the device runs in (``managed`` or ``git-only``) and why,
    in words that say what to do next."""
    where = str(config.path) if config.path else "agent.toml"
    if config.server is None:
        return {
            "management": "git-only",
            "management_reason": f"no [server] table in {where}: the desired release is the "
            "fleet policy at the branch head; `fleetcore agent enroll --server URL` makes "
            "the device managed",
        }
    # Where managed.credential_path() puts it (managed.py imports this module).
    credential = config.server.credential_file or config.state_dir / "credential"
    url = redact(config.server.url)
    if not credential.exists():
        return {
            "management": "managed",
            "management_reason": f"[server] url = {url} in {where}, but not "
            f"enrolled yet (no {credential}): run `fleetcore agent enroll`",
        }
    return {
        "management": "managed",
        "management_reason": f"[server] url = {url} in {where}; enrolled "
        f"(credential in {credential})",
    }


def _stale(config: AgentConfig, issued_at: dt.datetime | None) -> str:
    """Why the last desired state is stale (freeze protection), or ''."""
    limit = config.server.max_desired_age if config.server else config.verify.max_age
    if limit is None or issued_at is None:
        return ""
    bound = limit.seconds
    age = (dt.datetime.now(dt.UTC) - issued_at).total_seconds()
    if age <= bound:
        return ""
    if config.server is None:
        return (
            f"the branch head was committed at {issued_at.isoformat()}, {age:.0f}s ago "
            f"(more than [verify] max_age {bound:.0f}s): a frozen mirror or a stale branch"
        )
    return (
        f"the desired state was issued by the server at {issued_at.isoformat()}, "
        f"{age:.0f}s ago (more than max_desired_age {bound:.0f}s): a stale or replayed answer"
    )


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
