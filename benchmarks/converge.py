"""One converge of a small role after a one-file change: fleetcore against ansible-pull.

Both pull the same change from the same local repository and apply it: the
agent through its whole pipeline (fetch, verify, validate, switch, activate,
health), ansible-pull by checking the repo out and running a playbook that
installs the role and runs its activate script. A/B interleaved.

Three fleetcore figures:

- `fleetcore agent once` as a one-shot command, no service running (like
  ansible-pull from cron: it pays for starting Python and importing its
  libraries every time);
- one cycle of a running `fleetcore agent run`, woken by SIGHUP (what a
  device running the agent as a service pays);
- `fleetcore agent once` beside that service: it hands the cycle off to it.
  Counted honestly: the one-shot client's CPU plus the service's CPU for
  that cycle (read from /proc, its waited-for children included).

fleetcore runs from a virtual environment made as a device has it
(`pip install 'fleetcore[device]'`: the core and the device plugins, not
editable, bytecode compiled), through its `fleetcore` command, not from the
development venv with its editable installs and coverage hook.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Run, device_venv, measure, median, spread, table

from fleetcore.testing.gitrepo import FleetRepo

# The leanest playbook that does the same job, to be fair to the baseline:
# ansible-pull has already checked the repo out; one task installs the role
# and runs its activate script (the `copy` module would start one module
# process per file and cost several times more).
PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    dest: "{{ lookup('env', 'BENCH_DEST') }}"
  tasks:
    - name: install the role and activate it
      ansible.builtin.shell: "cp -a roles/web/. {{ dest }}/ && cd {{ dest }} && ./activate.sh"
"""

AGENT = """\
device_id = "bench-01"
role = "web"
state_dir = "{state}"
update_interval = "1h"
[source]
repo = "{repo}"
[throttle]
min_interval = "0s"
max_per_hour = 100000
"""
TICK = os.sysconf("SC_CLK_TCK")


def role_files() -> dict[str, str]:
    files = {f"roles/web/config/part{i}.conf": f"setting_{i} = {i}\n" * 20 for i in range(20)}
    files["roles/web/activate.sh"] = "#!/bin/sh\necho started > started.txt\n"
    files["roles/web/health.sh"] = "#!/bin/sh\nexit 0\n"
    files["roles/web/role.toml"] = '[health]\nsettle = "0s"\n'
    files["local.yml"] = PLAYBOOK
    return files


def cpu_with_children(pid: int) -> float:
    """utime + stime of a process and of its waited-for children (git, scripts)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def wait_until(done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not converge in time")
        time.sleep(0.02)


def service_converges(
    fleetcore: list[str], repo: FleetRepo, work: Path, rounds: int
) -> tuple[list[float], list[float], list[Run]]:
    """One running service: per round, a cycle woken by SIGHUP, then one
    handed off by `agent once`. Returns the SIGHUP cycles' CPU, the handed-off
    cycles' CPU in the service, and the `agent once` clients' runs."""
    config = work / "service.toml"
    config.write_text(AGENT.format(state=work / "service-state", repo=repo.path))
    proc = subprocess.Popen(
        [*fleetcore, "agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    current = work / "service-state" / "current"
    client = [*fleetcore, "agent", "once", "--config", str(config)]
    woken: list[float] = []
    handed: list[float] = []
    clients: list[Run] = []
    try:
        wait_until(lambda: current.exists() and (work / "service-state/agent.sock").exists())
        time.sleep(0.5)
        for i in range(rounds):
            commit = repo.commit(
                {"roles/web/config/part3.conf": f"setting_3 = s{i}\n"}, f"service change {i}"
            )
            before = cpu_with_children(proc.pid)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda c=commit: c[:12] in os.readlink(current))
            time.sleep(0.3)  # the cycle's tail: history, state, the newer-commit check
            woken.append(cpu_with_children(proc.pid) - before)

            commit = repo.commit(
                {"roles/web/config/part3.conf": f"setting_3 = h{i}\n"}, f"hand-off change {i}"
            )
            before = cpu_with_children(proc.pid)
            run = measure(client)
            if run.returncode != 0 or commit[:12] not in os.readlink(current):
                raise RuntimeError(f"the hand-off did not converge ({run.returncode})")
            time.sleep(0.3)  # the loop's tail after it answered
            handed.append(cpu_with_children(proc.pid) - before)
            clients.append(run)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return woken, handed, clients


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def run(rounds: int = 5) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fleetcore-bench-converge-"))
    try:
        print("making a device-like venv (pip install of the core and the device plugins)...")
        fleetcore = [str(device_venv(work / "venv").parent / "fleetcore")]
        repo = FleetRepo.create(work / "fleet")
        repo.commit(role_files(), "v1")
        (work / "agent.toml").write_text(AGENT.format(state=work / "state", repo=repo.path))
        dest = work / "ansible-dest"
        dest.mkdir()
        agent = [*fleetcore, "agent", "once", "--config", str(work / "agent.toml")]
        ansible = [
            "ansible-pull",
            "-U",
            f"file://{repo.path}",
            "-d",
            str(work / "ansible-work"),
            "-i",
            "localhost,",
            "local.yml",
        ]
        env = {"BENCH_DEST": str(dest), "ANSIBLE_NOCOLOR": "1"}
        measure(agent), measure(ansible, env=env)  # first install of both, not counted
        ours: list[Run] = []
        theirs: list[Run] = []
        for i in range(rounds):
            repo.commit({"roles/web/config/part3.conf": f"setting_3 = {i}\n"}, f"change {i}")
            ours.append(measure(agent))
            theirs.append(measure(ansible, env=env))
        expected = f"setting_3 = {rounds - 1}\n"
        assert (work / "state/current/config/part3.conf").read_text() == expected
        assert (dest / "config/part3.conf").read_text() == expected
        service, in_service, clients = service_converges(fleetcore, repo, work, rounds)
        handoff = [c.cpu + s for c, s in zip(clients, in_service, strict=True)]
        baseline = median(theirs, "cpu")
        ratio = baseline / median(ours, "cpu")
        service_ratio = baseline / statistics.median(service)
        handoff_ratio = baseline / statistics.median(handoff)
        print(f"\nconverge after a one-file change, {rounds} rounds each (median, min-max)")
        print(
            table(
                [
                    ["", "CPU s", "wall s", "peak MiB"],
                    [
                        "fleetcore agent once (in-process, no service)",
                        spread(ours, "cpu"),
                        spread(ours, "wall"),
                        f"{median(ours, 'max_rss_mib'):.0f}",
                    ],
                    [
                        "fleetcore agent once handed off: client + service",
                        _spread(handoff),
                        spread(clients, "wall"),
                        "-",
                    ],
                    ["  of which the client", spread(clients, "cpu"), "", ""],
                    ["  of which the service's cycle", _spread(in_service), "", ""],
                    ["fleetcore agent run (one cycle, SIGHUP)", _spread(service), "-", "-"],
                    [
                        "ansible-pull",
                        spread(theirs, "cpu"),
                        spread(theirs, "wall"),
                        f"{median(theirs, 'max_rss_mib'):.0f}",
                    ],
                ]
            )
        )
        print(
            f"fleetcore uses {ratio:.1f}x less CPU than ansible-pull as a one-shot command, "
            f"{handoff_ratio:.1f}x less handing off to the service (client + service), "
            f"{service_ratio:.1f}x less as a running service"
        )
        return {
            "fleetcore_cpu": median(ours, "cpu"),
            "fleetcore_wall": median(ours, "wall"),
            "fleetcore_rss_mib": median(ours, "max_rss_mib"),
            "handoff_cpu": statistics.median(handoff),
            "handoff_client_cpu": median(clients, "cpu"),
            "handoff_service_cpu": statistics.median(in_service),
            "handoff_wall": median(clients, "wall"),
            "service_cpu": statistics.median(service),
            "ansible_cpu": baseline,
            "ansible_wall": median(theirs, "wall"),
            "ansible_rss_mib": median(theirs, "max_rss_mib"),
            "cpu_ratio": ratio,
            "handoff_cpu_ratio": handoff_ratio,
            "service_cpu_ratio": service_ratio,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
