"""Offline bundles: a role's tree at one commit, with its manifest, in one file.

The seed's update path for air-gapped devices: an operator makes a bundle
where the fleet repo is reachable (``fleetcore bundle create``), carries it
(USB), and the device applies it (``fleetcore agent apply --bundle``) through
the same unpack, verify, validate, activate and health steps as any update.

A bundle is a gzip-compressed tar file whose first member is
``bundle.json`` (format, commit, role, creation time and the manifest with a
sha256 for every file), then, when made with ``--sign KEY``,
``bundle.json.sig`` (an SSH signature of those exact bytes, namespace
``fleetcore-bundle``), followed by the role's files under ``role/``. The
signature covers the manifest, and the manifest every file.
A bundle from anywhere is untrusted input: it is read as a stream, the header
is size-limited and validated, and every member goes through
:func:`fleetcore.release.unpack`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from fleetcore import sshsig
from fleetcore.errors import UnsafeArchiveError, VerifyError
from fleetcore.fetch.interface import Fetched, Source
from fleetcore.release import Manifest, unpack

FORMAT = "fleetcore-bundle/1"
HEADER = "bundle.json"
SIGNATURE = "bundle.json.sig"
NAMESPACE = "fleetcore-bundle"
MAX_SIGNATURE = 64 * 1024
PREFIX = "role"
MAX_HEADER = 64 * 1024 * 1024


def create(
    source: Source,
    commit: str,
    role: str,
    output: Path,
    *,
    max_bytes: int = 2 * 1024**3,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
    sign_key: Path | None = None,
) -> Manifest:
    """Write the bundle of ``role`` at ``commit`` to ``output``; return its manifest.

    The role is fetched and verified exactly as a device would, then its
    sha256 manifest is written ahead of the files, signed with the SSH
    private key ``sign_key`` when given. ``progress`` (a command on a
    terminal) makes a meter per step: ``(label, total) -> update(done)``.
    """
    with tempfile.TemporaryDirectory(prefix="fleetcore-bundle-") as tmp:
        work = Path(tmp, "fetch")
        work.mkdir()
        fetched = source.fetch(commit, role, work)
        tree = Path(tmp, "tree")
        unpacked = unpack(
            fetched.archive,
            tree,
            prefix=fetched.prefix,
            max_bytes=max_bytes,
            git_blobs=fetched.manifest.wants_git_blob,
            progress=progress(f"check {role}@{commit[:12]}", fetched.manifest.total_size)
            if progress
            else None,
        )
        problems = fetched.manifest.compare(unpacked)
        if problems:
            raise VerifyError(
                f"{role}@{commit[:12]} does not match its manifest: "
                + "; ".join(str(p) for p in problems)
            )
        manifest = Manifest.from_unpacked(fetched.manifest.commit, role, unpacked)
        header = json.dumps(
            {
                "format": FORMAT,
                "commit": manifest.commit,
                "role": role,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "manifest": manifest.to_json(),
            },
            indent=1,
        ).encode()
        signature = sshsig.sign(sign_key, NAMESPACE, header) if sign_key else None
        partial = output.with_name(f".{output.name}.partial")
        # Fixed times and owners: the same commit gives the same bundle bytes.
        with (
            open(partial, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            info = tarfile.TarInfo(HEADER)
            info.size = len(header)
            tar.addfile(info, io.BytesIO(header))
            if signature is not None:
                info = tarfile.TarInfo(SIGNATURE)
                info.size = len(signature)
                tar.addfile(info, io.BytesIO(signature))
            update = progress(f"write {output.name}", manifest.total_size) if progress else None
            done = 0
            for entry in manifest.entries:
                path = tree / entry.path
                info = tarfile.TarInfo(f"{PREFIX}/{entry.path}")
                if entry.link is not None:
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.link
                    tar.addfile(info)
                    continue
                info.size = entry.size
                info.mode = entry.mode
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
                done += entry.size
                if update is not None:
                    update(done)
        os.replace(partial, output)
        return manifest


def read_signed(path: Path) -> tuple[bytes, bytes | None]:
    """The header's exact bytes and the bundle's signature (None: unsigned)."""
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            first = tar.next()
            if first is None or first.name != HEADER or first.size > MAX_HEADER:
                raise UnsafeArchiveError(f"{path}: not a fleetcore bundle (no {HEADER} first)")
            handle = tar.extractfile(first)
            assert handle is not None
            header = handle.read()
            second = tar.next()
            if second is None or second.name != SIGNATURE or not second.isfile():
                return header, None
            if second.size > MAX_SIGNATURE:
                raise UnsafeArchiveError(
                    f"{path}: {SIGNATURE} is larger than {MAX_SIGNATURE} bytes"
                )
            handle = tar.extractfile(second)
            assert handle is not None
            return header, handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"{path}: not a readable bundle: {exc}") from None


def open_bundle(path: Path) -> Fetched:
    """Read and validate a bundle's header; the files are unpacked later by
    the agent, against the header's manifest."""
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            first = tar.next()
            if first is None or first.name != HEADER or not first.isfile():
                raise UnsafeArchiveError(f"{path}: not a fleetcore bundle (no {HEADER} first)")
            if first.size > MAX_HEADER:
                raise UnsafeArchiveError(f"{path}: {HEADER} is larger than {MAX_HEADER} bytes")
            handle = tar.extractfile(first)
            assert handle is not None
            raw = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"{path}: not a readable bundle: {exc}") from None
    try:
        header = json.loads(raw)
        if header.get("format") != FORMAT:
            raise VerifyError(f"{path}: unknown bundle format {header.get('format')!r}")
        manifest = Manifest.from_json(header["manifest"], source=f"{path}:{HEADER}")
    except (ValueError, KeyError, AttributeError) as exc:
        raise VerifyError(f"{path}: malformed {HEADER}: {exc}") from None
    if manifest.commit != header.get("commit") or manifest.role != header.get("role"):
        raise VerifyError(f"{path}: {HEADER} disagrees with its own manifest")
    if any(e.sha256 is None for e in manifest.entries if e.link is None):
        raise VerifyError(f"{path}: the manifest lacks a sha256 for some files")
    return Fetched(archive=path, prefix=PREFIX, manifest=manifest)
