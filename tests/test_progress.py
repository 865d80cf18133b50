"""Long operations draw progress on a terminal (a real pseudo-terminal here)
and nothing in pipes: `bundle create` and `agent apply` of a large bundle."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.serverproc import FLEETCORE


def run(args: list[str], cwd: Path, terminal: bool) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (as a person at a console) or a
    pipe (as a script or a service); return the code, stdout and stderr."""
    if not terminal:
        out = subprocess.run(
            [*FLEETCORE, *args], cwd=cwd, capture_output=True, text=True, timeout=300
        )
        return out.returncode, out.stdout, out.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*FLEETCORE, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(300)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_bundle_create_and_apply_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    repo = FleetRepo.create(tmp_path / "fleet")
    files = {f"roles/web/data/part-{i:02}.bin": os.urandom(128 * 1024).hex() for i in range(16)}
    files["roles/web/activate.sh"] = "#!/bin/sh\necho up\n"
    repo.commit(files, "web: 4 MB of data")
    create = ["bundle", "create", "--repo", str(repo.path), "--commit", "main", "--role", "web"]

    code, _, err = run([*create, "-o", "quiet.tar.gz"], tmp_path, terminal=False)
    assert code == 0, err
    assert "\r" not in err and "write quiet.tar.gz" not in err

    code, out, err = run([*create, "-o", "web.tar.gz"], tmp_path, terminal=True)
    assert code == 0, err
    assert "write web.tar.gz" in err and "100%" in err
    # Redrawn in place: several frames on one line, then a newline.
    frames = [line for line in err.split("\r") if "write web.tar.gz" in line]
    assert len(frames) >= 2, err
    assert "wrote web.tar.gz" in out
    # --json is for scripts: no meter even on a terminal.
    code, _, err = run([*create, "-o", "json.tar.gz", "--json"], tmp_path, terminal=True)
    assert code == 0 and "write json.tar.gz" not in err

    (tmp_path / "agent.toml").write_text(
        f'device_id = "pi-001"\nrole = "web"\nstate_dir = "state"\n[source]\nrepo = "{repo.path}"\n'
    )
    apply = ["agent", "apply", "--config", "agent.toml", "--bundle", "web.tar.gz"]
    code, out, err = run(apply, tmp_path, terminal=True)
    assert code == 0, out + err
    assert "unpack " in err and "4.0 MB / 4.0 MB  100%" in err
