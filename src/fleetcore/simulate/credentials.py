"""The simulated devices' credentials, kept between runs (``--credentials FILE``).

A server enrolls a device id once: a second run of the same fleet would be
refused (409) for every device. With a credentials file the first run
writes each device's credential there, and a later run against the same
server resumes as the same devices instead of enrolling again. The file
holds secrets: it is written atomically with mode 0600, and nothing here
ever prints a credential.
"""

from __future__ import annotations

import json
from pathlib import Path

from fleetcore.files import atomic_write_json
from fleetcore.simulate.plan import OptionError

FORMAT = "fleetcore-simulate-credentials/1"


class CredentialFile:
    """``{device id: credential}`` for one server, read at start and
    rewritten when devices enrolled since the last write; with no path,
    kept in memory for this run only."""

    def __init__(self, path: Path | None, server: str) -> None:
        self.path = path
        self.server = server
        self.known: dict[str, str] = {} if path is None else self._read(path)
        self._unsaved = False

    def _read(self, path: Path) -> dict[str, str]:
        where = f"--credentials: {path}"
        if not path.exists():
            if not path.parent.is_dir():
                raise OptionError(f"{where}: no folder {str(path.parent)!r} to write it in")
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            # The error names the file, never its content (credentials).
            raise OptionError(f"{where}: not readable as JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            data = {}
        credentials = data.get("credentials")
        if (
            data.get("format") != FORMAT
            or not isinstance(credentials, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in credentials.items())
        ):
            raise OptionError(f"{where}: not a credentials file written by fleetcore simulate")
        if data.get("server") != self.server:
            raise OptionError(
                f"{where}: holds credentials for {data.get('server')!r}, not {self.server!r}"
            )
        return credentials

    def get(self, device_id: str) -> str | None:
        return self.known.get(device_id)

    def add(self, device_id: str, credential: str) -> None:
        self.known[device_id] = credential
        self._unsaved = True

    def save(self) -> None:
        """Write the file if a device enrolled since the last write."""
        if not self._unsaved or self.path is None:
            return
        self._unsaved = False
        try:
            atomic_write_json(
                self.path,
                {"format": FORMAT, "server": self.server, "credentials": self.known},
                mode=0o600,
            )
        except OSError:
            self._unsaved = True
            raise
