"""A real MQTT broker for tests: Debian's ``mosquitto`` on a loopback port.

>>> broker = Mosquitto.start()     # None when mosquitto is not installed
>>> broker.url                     # mqtt://127.0.0.1:PORT
>>> broker.restart()               # the same port, clients must reconnect
>>> broker.stop()

``Mosquitto.start(tls=(ca, cert, key))`` serves ``mqtts://`` with that
certificate; ``users={"name": "password"}`` refuses anyone else.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from fleetcore.testing.services import free_port, wait_for_port


def binary() -> str | None:
    """Debian installs the broker in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None,
    )


class Mosquitto:
    def __init__(
        self,
        root: Path,
        port: int,
        exe: str,
        tls: tuple[Path, Path, Path] | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.port = port
        self.exe = exe
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{port}"
        self.config = root / "mosquitto.conf"
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Run as whoever runs the tests: as root, mosquitto would otherwise
        # switch to a `mosquitto` user that a bare machine may not have.
        lines = [
            f"listener {port} 127.0.0.1",
            "persistence false",
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if tls is not None:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if users:
            passwords = root / "passwords"
            passwords.write_text("".join(f"{name}:{pw}\n" for name, pw in users.items()))
            # Hashes the plain passwords in place.
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines) + "\n")

    @classmethod
    def start(
        cls, tls: tuple[Path, Path, Path] | None = None, users: dict[str, str] | None = None
    ) -> Mosquitto | None:
        exe = binary()
        if exe is None:
            return None
        root = Path(tempfile.mkdtemp(prefix="fleetcore-mqtt-"))
        broker = cls(root, free_port(), exe, tls, users)
        broker.run()
        return broker

    def run(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_for_port(self.port, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")

    def halt(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.halt()
        self.run()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
