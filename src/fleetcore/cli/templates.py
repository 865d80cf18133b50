"""What ``fleetcore init`` writes: a starter fleet repo and an agent.toml.

The starter role needs nothing but a POSIX shell: ``activate.sh`` records
the running release in the state folder, ``health.sh`` checks that record,
``validate.sh`` checks the role's own files. Each is short and says where to
put the real work, so the repo is a skeleton to edit, not a demo to undo.
"""

from __future__ import annotations

FLEET_TOML = """\
# Fleet policy. Git-only devices read it from the head of their branch; a
# control server (`fleetcore server run`) runs rollouts instead.
# Every key: docs/configuration.md. Check with `fleetcore config check --repo .`

# Who takes the branch head: "all" (every device), or a rollout-strategy
# plugin such as "percentage" or "canary" (see `fleetcore plugins`).
[rollout]
strategy = "all"

# Per role:
# [roles.{role}.rollout]
# strategy = "canary"
# segments = ["canary"]
"""

ROLE_TOML = """\
# Role {role}: how a release is activated and checked. activate.sh is found
# by name (the script activator); a docker-compose.yml would select Compose.
update_interval = "60s"

[health]
settle = "1s"        # wait after activation before health checks run
attempts = 3         # rounds of checks before the release is rolled back
interval = "2s"
"""

ACTIVATE_SH = """\
#!/bin/sh
# Starts release $FLEETCORE_COMMIT of role $FLEETCORE_ROLE. Runs in the new
# release's folder ($FLEETCORE_RELEASE_DIR) after validate.sh passed.
# Replace the body with what starts your service (and keep it idempotent).
set -e
. ./config/{role}.env
echo "$FLEETCORE_COMMIT" > "$FLEETCORE_STATE_DIR/{role}.running"
echo "{role}: $GREETING (release $FLEETCORE_COMMIT)"
"""

VALIDATE_SH = """\
#!/bin/sh
# Runs in the new release before it is activated; non-zero keeps the old one.
set -e
test -s config/{role}.env || {{ echo "config/{role}.env is missing or empty" >&2; exit 1; }}
. ./config/{role}.env
test -n "$GREETING" || {{ echo "GREETING is not set in config/{role}.env" >&2; exit 1; }}
"""

HEALTH_SH = """\
#!/bin/sh
# Healthy when the release activate.sh started is the one being checked.
# Replace with a real probe of your service (or add [health.http] to role.toml).
test "$(cat "$FLEETCORE_STATE_DIR/{role}.running" 2>/dev/null)" = "$FLEETCORE_COMMIT"
"""

ENV = """\
# Settings of role {role}, read by activate.sh and validate.sh.
GREETING="hello from {role}"
"""

README = """\
# Fleet repo

Made by `fleetcore init fleet`. One role, `{role}`:

- `fleet.toml`: who takes a new commit (git-only devices).
- `roles/{role}/role.toml`: activation and health settings.
- `roles/{role}/validate.sh`, `activate.sh`, `health.sh`: run by the agent on
  each device, in that order, for every new release.

Check it with `fleetcore config check --repo .`; devices get a config with
`fleetcore init agent --device-id ID --role {role} --repo URL`.
"""

AGENT_TOML = """\
# fleetcore agent of device {device_id} (written by `fleetcore init agent`).
# Every key: docs/configuration.md. Check with `fleetcore config check --config FILE`.
device_id = {device_id_q}
role = {role_q}
segment = {segment_q}      # canary, early or general: when rollouts reach it
state_dir = {state_dir_q}

[source]
repo = {repo_q}
branch = {branch_q}
"""

SERVER_TABLE = """
# Managed mode: the control server decides what this device runs.
# Enroll once with `fleetcore agent enroll --enrollment-token TOKEN`.
[server]
url = {url_q}
"""

NO_SERVER = """
# Git-only: the device follows fleet.toml at the branch head. To be managed by
# a control server, run `fleetcore agent enroll --server URL --enrollment-token
# TOKEN`: it adds [server] url here.
"""

FLEET_FILES = {
    "fleet.toml": FLEET_TOML,
    "README.md": README,
    "roles/{role}/role.toml": ROLE_TOML,
    "roles/{role}/activate.sh": ACTIVATE_SH,
    "roles/{role}/validate.sh": VALIDATE_SH,
    "roles/{role}/health.sh": HEALTH_SH,
    "roles/{role}/config/{role}.env": ENV,
}
"""Path template -> content template of a new fleet repo."""
