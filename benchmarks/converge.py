"""One converge of a small role after a one-file change: fleetcore against ansible-pull.

Both pull the same change from the same local repository and apply it: the
agent through its whole pipeline (fetch, verify, validate, switch, activate,
health), ansible-pull by checking the repo out and running a playbook that
installs the role and runs its activate script. A/B interleaved.

Two fleetcore figures: `fleetcore agent once` as a one-shot command (like
ansible-pull from cron: it pays for starting Python and importing its
libraries every time), and one cycle of a running `fleetcore agent run`,
woken by SIGHUP (what a device running the agent as a service pays).
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

from _common import FLEETCORE, Run, measure, median, spread, table

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


def service_converges(repo: FleetRepo, work: Path, rounds: int) -> list[float]:
    config = work / "service.toml"
    config.write_text(AGENT.format(state=work / "service-state", repo=repo.path))
    proc = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    current = work / "service-state" / "current"
    costs = []
    try:
        wait_until(current.exists)
        time.sleep(0.5)
        for i in range(rounds):
            commit = repo.commit(
                {"roles/web/config/part3.conf": f"setting_3 = s{i}\n"}, f"service change {i}"
            )
            before = cpu_with_children(proc.pid)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda c=commit: c[:12] in os.readlink(current))
            time.sleep(0.3)  # the cycle's tail: history, state, the newer-commit check
            costs.append(cpu_with_children(proc.pid) - before)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return costs


def run(rounds: int = 5) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fleetcore-bench-converge-"))
    try:
        repo = FleetRepo.create(work / "fleet")
        repo.commit(role_files(), "v1")
        (work / "agent.toml").write_text(AGENT.format(state=work / "state", repo=repo.path))
        dest = work / "ansible-dest"
        dest.mkdir()
        agent = [*FLEETCORE, "agent", "once", "--config", str(work / "agent.toml")]
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
        service = service_converges(repo, work, rounds)
        ratio = median(theirs, "cpu") / median(ours, "cpu")
        service_ratio = median(theirs, "cpu") / statistics.median(service)
        low, high = min(service), max(service)
        print(f"\nconverge after a one-file change, {rounds} rounds each (median, min-max)")
        print(
            table(
                [
                    ["", "CPU s", "wall s", "peak MiB"],
                    [
                        "fleetcore agent once",
                        spread(ours, "cpu"),
                        spread(ours, "wall"),
                        f"{median(ours, 'max_rss_mib'):.0f}",
                    ],
                    [
                        "fleetcore agent run (one cycle)",
                        f"{statistics.median(service):.3f} ({low:.3f}-{high:.3f})",
                        "-",
                        "-",
                    ],
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
            f"fleetcore uses {ratio:.1f}x less CPU as a one-shot command and "
            f"{service_ratio:.1f}x less as a running service (target: 10x)"
        )
        return {
            "fleetcore_cpu": median(ours, "cpu"),
            "fleetcore_wall": median(ours, "wall"),
            "fleetcore_rss_mib": median(ours, "max_rss_mib"),
            "service_cpu": statistics.median(service),
            "ansible_cpu": median(theirs, "cpu"),
            "ansible_wall": median(theirs, "wall"),
            "ansible_rss_mib": median(theirs, "max_rss_mib"),
            "cpu_ratio": ratio,
            "service_cpu_ratio": service_ratio,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
