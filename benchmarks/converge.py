"""One converge of a small role after a one-file change: fleetcore against ansible-pull.

Both pull the same change from the same local repository and apply it: the
agent through its whole pipeline (fetch, verify, validate, switch, activate,
health), ansible-pull by cloning and running a playbook that copies the role
and runs its activate script. A/B interleaved, N rounds each.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from _common import FLEETCORE, Run, measure, median, spread, table

from fleetcore.testing.gitrepo import FleetRepo

PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    dest: "{{ lookup('env', 'BENCH_DEST') }}"
  tasks:
    - name: role files
      ansible.builtin.copy:
        src: roles/web/
        dest: "{{ dest }}/"
        mode: preserve
      notify: activate
  handlers:
    - name: activate
      ansible.builtin.command: "{{ dest }}/activate.sh"
      args:
        chdir: "{{ dest }}"
"""

AGENT = """\
device_id = "bench-01"
role = "web"
state_dir = "{state}"
[source]
repo = "{repo}"
[throttle]
min_interval = "0s"
max_per_hour = 100000
"""


def role_files() -> dict[str, str]:
    files = {f"roles/web/config/part{i}.conf": f"setting_{i} = {i}\n" * 20 for i in range(20)}
    files["roles/web/activate.sh"] = "#!/bin/sh\necho started > started.txt\n"
    files["roles/web/health.sh"] = "#!/bin/sh\nexit 0\n"
    files["roles/web/role.toml"] = '[health]\nsettle = "0s"\n'
    files["local.yml"] = PLAYBOOK
    return files


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
        assert (
            work / "state/current/config/part3.conf"
        ).read_text() == f"setting_3 = {rounds - 1}\n"
        assert (dest / "config/part3.conf").read_text() == f"setting_3 = {rounds - 1}\n"
        ratio = median(theirs, "cpu") / median(ours, "cpu")
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
                        "ansible-pull",
                        spread(theirs, "cpu"),
                        spread(theirs, "wall"),
                        f"{median(theirs, 'max_rss_mib'):.0f}",
                    ],
                ]
            )
        )
        print(f"fleetcore uses {ratio:.1f}x less CPU (target: 10x)")
        return {
            "fleetcore_cpu": median(ours, "cpu"),
            "ansible_cpu": median(theirs, "cpu"),
            "fleetcore_wall": median(ours, "wall"),
            "ansible_wall": median(theirs, "wall"),
            "fleetcore_rss_mib": median(ours, "max_rss_mib"),
            "ansible_rss_mib": median(theirs, "max_rss_mib"),
            "cpu_ratio": ratio,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
