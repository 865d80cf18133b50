"""SSH signatures (``ssh-keygen -Y sign|verify``), as git signs commits
with ``gpg.format = ssh``: one helper for the ``signature`` verify check
(commits) and for offline bundles.

A signature holds when ``ssh-keygen -Y find-principals`` finds its key in
an allowed-signers file (git's format) and ``ssh-keygen -Y verify`` accepts
it for that principal and namespace, with the key not in the revoked keys.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

TIMEOUT = 30.0


def _ssh_keygen(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["ssh-keygen", *args], input=stdin, capture_output=True, timeout=TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise OSError("ssh-keygen is not installed (OpenSSH 8.2 or later is needed)") from None


def _last_line(raw: bytes) -> str:
    lines = raw.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def sign(key: Path, namespace: str, data: bytes) -> bytes:
    """An armored SSH signature of ``data`` by private ``key``."""
    with tempfile.TemporaryDirectory(prefix="fleetcore-sign-") as tmp:
        message = Path(tmp) / "data"
        message.write_bytes(data)
        out = _ssh_keygen(["-Y", "sign", "-f", str(key), "-n", namespace, str(message)], b"")
        if out.returncode != 0:
            raise OSError(f"ssh-keygen could not sign with {key}: {_last_line(out.stderr)}")
        return (Path(tmp) / "data.sig").read_bytes()


def verify(
    *,
    allowed_signers: Path,
    revoked_keys: Path | None,
    namespace: str,
    data: bytes,
    signature: bytes,
    what: str,
) -> str | None:
    """Why the signature of ``what`` does not hold, or None when an allowed,
    unrevoked signer made it."""
    with tempfile.TemporaryDirectory(prefix="fleetcore-sig-") as tmp:
        sig_file = Path(tmp) / "data.sig"
        sig_file.write_bytes(signature)
        found = _ssh_keygen(
            ["-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed_signers)], b""
        )
        principals = found.stdout.decode(errors="replace").split()
        if found.returncode != 0 or not principals:
            return f"{what} is signed by a key that is not in {allowed_signers}"
        revoked = ["-r", str(revoked_keys)] if revoked_keys else []
        args = ["-Y", "verify", "-f", str(allowed_signers), "-I", principals[0]]
        args += ["-n", namespace, "-s", str(sig_file), *revoked]
        checked = _ssh_keygen(args, data)
        if checked.returncode != 0:
            reason = _last_line(checked.stderr or checked.stdout)
            return f"{what}: the signature by {principals[0]} does not verify ({reason})"
    return None
