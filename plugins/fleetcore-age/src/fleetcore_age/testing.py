"""Test helpers for fleetcore-age and other secrets plugins: devices with age
keys running a real agent, and the reference ``age`` / ``age-keygen`` /
``ssh-keygen`` commands. Imported by tests only (needs pytest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from fleetcore.testing.agent import Agent, Clock, ManualClock, local_agent
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import missing

AGENT_TOML = """\
device_id = "{device_id}"
role = "{role}"
state_dir = "{state_dir}"

[source]
repo = "{repo}"
branch = "main"

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 1000
max_failures = 50

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"

[secrets.age]
identity = "{identity}"
"""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the {name} command")
    assert path is not None
    return path


def age_keygen(path: Path) -> str:
    """A new identity made by the reference age-keygen; returns its recipient."""
    subprocess.run([tool("age-keygen"), "-o", str(path)], check=True, capture_output=True)
    out = subprocess.run(
        [tool("age-keygen"), "-y", str(path)], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def ssh_keygen(path: Path) -> str:
    """A new OpenSSH ed25519 key pair; returns the public key line."""
    subprocess.run(
        [tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def age_encrypt(data: bytes, recipients: list[str], *, armor: bool = False) -> bytes:
    args = [tool("age"), "-e"]
    for r in recipients:
        args += ["-r", r]
    if armor:
        args.append("-a")
    return subprocess.run(args, input=data, check=True, capture_output=True).stdout


def age_decrypt(data: bytes, identity: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [tool("age"), "-d", "-i", str(identity)], input=data, capture_output=True, check=False
    )


class Device:
    """One device: agent.toml, identity, state folder, marker file."""

    def __init__(
        self, root: Path, repo: FleetRepo, device_id: str, role: str = "web", extra: str = ""
    ) -> None:
        self.root = root
        self.device_id = device_id
        root.mkdir(parents=True, exist_ok=True)
        self.identity = root / "identity.age"
        self.recipient = age_keygen(self.identity)
        self.out = root / "running.txt"
        self.config_path = root / "agent.toml"
        self.config_path.write_text(
            AGENT_TOML.format(
                device_id=device_id,
                role=role,
                state_dir=root / "state",
                repo=repo.path,
                identity=self.identity,
            )
            + extra
        )
        self.clock = ManualClock()

    def agent(self, clock: Clock | None = None) -> Agent:
        """The agent in this process; ``clock`` defaults to a manual clock
        (give a real one after running the agent as a process)."""
        return local_agent(self.config_path, clock=clock or self.clock)

    def running(self) -> str | None:
        return self.out.read_text().strip() if self.out.exists() else None

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def current(self) -> Path:
        return self.state / "current"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``fleetcore ARGS --config agent.toml`` as a real process."""
        env = {**os.environ, "FLEETCORE_TEST_OUT": str(self.out)}
        return subprocess.run(
            [sys.executable, "-m", "fleetcore", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    def status_json(self) -> dict[str, Any]:
        return json.loads(self.cli("agent", "status", "--json").stdout)


def role_files(
    marker: str,
    secrets: dict[str, bytes],
    *,
    validate: str = "",
    health: str = "exit 0",
    role: str = "web",
    role_toml: str = "",
) -> dict[str, str | bytes]:
    """A script-activated role with encrypted files. ``activate.sh`` records
    the marker, the commit and a digest of $API_TOKEN (never the value)."""
    files: dict[str, str | bytes] = {
        f"roles/{role}/activate.sh": textwrap.dedent(f"""\
            #!/bin/sh
            set -e
            digest=$(printf %s "${{API_TOKEN:-}}" | sha256sum | cut -c1-16)
            echo "{marker} $FLEETCORE_COMMIT $digest" > "${{FLEETCORE_TEST_OUT:-/dev/null}}"
            """),
        f"roles/{role}/health.sh": f"#!/bin/sh\n{health}\n",
        f"roles/{role}/role.toml": '[health]\nsettle = "0s"\n' + role_toml,
    }
    if validate:
        files[f"roles/{role}/validate.sh"] = "#!/bin/sh\nset -e\n" + validate
    for name, data in secrets.items():
        files[f"roles/{role}/{name}"] = data
    return files


def digest(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()[:16]
