"""Releases: a role's tree at one commit, its manifest, and safe unpacking.

Every archive is untrusted, whoever made it. :func:`unpack` reads it as a
stream and validates each member itself before anything touches the disk:
no absolute paths, no ``..``, no hard links, no devices or FIFOs, no link that
leads out of the tree, nothing written through a link, no duplicate member,
and no more bytes than the configured limit. tarfile's ``filter="data"`` is
not relied on: it has been bypassed before (CVE-2025-4517).

While it writes, it measures every file (size, mode, sha256, and the git
blob id when the manifest comes from git), so verification needs no second
read of the data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from attrs import field, frozen

from fleetcore.errors import UnsafeArchiveError, VerifyError
from fleetcore.model import Finding

CHUNK = 1 << 20
MAX_MEMBERS = 200_000
MANIFEST_FORMAT = 1


def normal_mode(mode: int) -> int:
    """Files are 0644 or 0755: git knows no other modes, and setuid, setgid,
    sticky or world-writable bits from an archive are never honoured."""
    return 0o755 if mode & 0o111 else 0o644


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@frozen(kw_only=True)
class ManifestEntry:
    """One file of a release. ``link`` is set for symbolic links (then the
    digests, if any, are of the link's target text, as git stores it)."""

    path: str
    size: int = 0
    mode: int = 0o644
    sha256: str | None = None
    git_blob: str | None = None
    link: str | None = None


@frozen(kw_only=True)
class Manifest:
    """What a release must contain, file by file."""

    commit: str
    role: str
    entries: tuple[ManifestEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def by_path(self) -> dict[str, ManifestEntry]:
        return {e.path: e for e in self.entries}

    @property
    def wants_git_blob(self) -> bool:
        return any(e.git_blob and not e.sha256 for e in self.entries if not e.link)

    def to_json(self) -> dict[str, Any]:
        files = []
        for e in self.entries:
            item: dict[str, Any] = {"path": e.path}
            if e.link is not None:
                item["link"] = e.link
            else:
                item["size"] = e.size
                item["mode"] = f"{e.mode:04o}"
            if e.sha256:
                item["sha256"] = e.sha256
            if e.git_blob:
                item["git_blob"] = e.git_blob
            files.append(item)
        return {"format": MANIFEST_FORMAT, "commit": self.commit, "role": self.role, "files": files}

    @classmethod
    def from_json(cls, data: Any, source: str = "manifest") -> Manifest:
        """Parse an untrusted manifest, refusing anything malformed."""
        try:
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            entries = []
            for item in data["files"]:
                path = _safe_name(str(item["path"]))
                if "link" in item:
                    entries.append(
                        ManifestEntry(
                            path=path,
                            link=str(item["link"]),
                            sha256=item.get("sha256"),
                            git_blob=item.get("git_blob"),
                        )
                    )
                else:
                    size = int(item["size"])
                    if size < 0:
                        raise ValueError(f"negative size for {path}")
                    entries.append(
                        ManifestEntry(
                            path=path,
                            size=size,
                            mode=normal_mode(int(str(item["mode"]), 8)),
                            sha256=item.get("sha256"),
                            git_blob=item.get("git_blob"),
                        )
                    )
            return cls(commit=str(data["commit"]), role=str(data["role"]), entries=tuple(entries))
        except (KeyError, TypeError, ValueError, AttributeError, UnsafeArchiveError) as exc:
            raise VerifyError(f"{source}: malformed manifest: {exc}") from None

    @classmethod
    def from_unpacked(cls, commit: str, role: str, unpacked: Unpacked) -> Manifest:
        """The manifest of what was unpacked: the baseline for drift checks."""
        return cls(
            commit=commit,
            role=role,
            entries=tuple(
                ManifestEntry(path=m.path, size=m.size, mode=m.mode, sha256=m.sha256, link=m.link)
                for m in sorted(unpacked.files.values(), key=lambda m: m.path)
            ),
        )

    def compare(self, unpacked: Unpacked) -> list[Finding]:
        """Every difference between this manifest and what was unpacked."""
        findings = []
        expected = self.by_path()
        for path, entry in expected.items():
            got = unpacked.files.get(path)
            if got is None:
                findings.append(Finding(message="missing", subject=path, code="file-missing"))
                continue
            findings.extend(_compare_entry(entry, got))
        for path in sorted(set(unpacked.files) - set(expected)):
            findings.append(Finding(message="not in the manifest", subject=path, code="file-extra"))
        return findings


def _compare_entry(entry: ManifestEntry, got: Measured) -> Iterator[Finding]:
    p = entry.path
    if (entry.link is None) != (got.link is None):
        kind = lambda x: "link" if x is not None else "file"  # noqa: E731
        yield Finding(
            message="wrong type",
            subject=p,
            code="file-changed",
            expected=kind(entry.link),
            found=kind(got.link),
        )
        return
    if entry.link is not None:
        if entry.link not in ("", got.link) and not entry.git_blob:
            yield Finding(
                message="link target differs",
                subject=p,
                code="file-changed",
                expected=entry.link,
                found=got.link,
            )
        if entry.git_blob and got.git_blob and entry.git_blob != got.git_blob:
            yield Finding(
                message="link target differs",
                subject=p,
                code="file-changed",
                expected=f"blob {entry.git_blob[:12]}",
                found=got.link,
            )
        return
    if entry.size != got.size:
        yield Finding(
            message="size differs",
            subject=p,
            code="file-changed",
            expected=str(entry.size),
            found=str(got.size),
        )
    if entry.mode != got.mode:
        yield Finding(
            message="mode differs",
            subject=p,
            code="file-mode",
            expected=f"{entry.mode:04o}",
            found=f"{got.mode:04o}",
        )
    if entry.sha256 and entry.sha256 != got.sha256:
        yield Finding(
            message="checksum differs",
            subject=p,
            code="file-changed",
            expected=f"sha256:{entry.sha256[:16]}…",
            found=f"sha256:{(got.sha256 or '?')[:16]}…",
        )
    elif entry.git_blob and not entry.sha256 and entry.git_blob != got.git_blob:
        yield Finding(
            message="checksum differs",
            subject=p,
            code="file-changed",
            expected=f"git blob {entry.git_blob[:12]}",
            found=f"git blob {(got.git_blob or '?')[:12]}",
        )
    if not entry.sha256 and not entry.git_blob:
        yield Finding(
            message="manifest has no checksum for this file", subject=p, code="manifest-incomplete"
        )


@frozen(kw_only=True)
class Measured:
    """What the unpacker saw of one file."""

    path: str
    size: int
    mode: int
    sha256: str | None = None
    git_blob: str | None = None
    link: str | None = None
    mtime_ns: int | None = None
    """Set by :func:`measure_tree` (files on disk), not by the unpacker."""


@frozen(kw_only=True)
class Unpacked:
    root: Path
    files: dict[str, Measured] = field(factory=dict)

    @property
    def total_size(self) -> int:
        return sum(m.size for m in self.files.values())


def _safe_name(name: str) -> str:
    """A member name as a clean relative path, or an error saying why not."""
    if not name or "\0" in name:
        raise UnsafeArchiveError(f"member with an empty or invalid name: {name!r}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"member with an absolute path: {name!r}")
    if "\\" in name:
        raise UnsafeArchiveError(f"member with a backslash in its name: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"member with '..' in its path: {name!r}")
    if not parts:
        raise UnsafeArchiveError(f"member with an empty name: {name!r}")
    return "/".join(parts)


def _link_inside(name: str, target: str) -> bool:
    if not target or target.startswith("/") or "\0" in target:
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def unpack(
    archive: Path | IO[bytes],
    dest: Path,
    *,
    prefix: str = "",
    max_bytes: int,
    git_blobs: bool = False,
    skip: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
) -> Unpacked:
    """Unpack the members of ``archive`` under ``prefix`` into the empty folder
    ``dest``, validating each one; return what was written, measured.
    ``progress`` is called with the bytes written so far after each file.

    Raises :class:`UnsafeArchiveError` naming the offending member; ``dest``
    is then left for the caller to remove.
    """
    prefix = prefix.strip("/")
    skipped = set(skip)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise UnsafeArchiveError(f"unpack folder {dest} is not empty")
    result = Unpacked(root=dest)
    links: set[str] = set()
    dirs: set[str] = set()
    written = 0
    members = 0
    try:
        # Closed by the `with tar:` below; opening is apart to report its errors.
        tar = (
            tarfile.open(fileobj=archive, mode="r|*")  # noqa: SIM115
            if not isinstance(archive, Path)
            else tarfile.open(archive, mode="r|*")  # noqa: SIM115
        )
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchiveError(f"not a readable tar archive: {exc}") from None
    try:
        with tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise UnsafeArchiveError(f"more than {MAX_MEMBERS} members")
                if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                    continue
                name = _safe_name(member.name)
                if prefix:
                    if name == prefix or prefix.startswith(name + "/"):
                        continue  # the folders leading to the role
                    if not name.startswith(prefix + "/"):
                        continue  # other parts of the archive (e.g. a bundle's header)
                    name = name[len(prefix) + 1 :]
                if name in skipped:
                    continue
                # Nothing is ever written through a link, whatever order the
                # members come in: that is how extraction filters get bypassed.
                parents = name.split("/")[:-1]
                for i in range(1, len(parents) + 1):
                    if "/".join(parents[:i]) in links:
                        raise UnsafeArchiveError(f"member {member.name!r} lies under a link")
                target = dest / name
                if member.isdir():
                    if name in links or name in result.files:
                        raise UnsafeArchiveError(f"duplicate member {member.name!r}")
                    target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    dirs.add(name)
                    continue
                if name in result.files or name in dirs:
                    raise UnsafeArchiveError(f"duplicate member {member.name!r}")
                if member.issym():
                    if not _link_inside(name, member.linkname):
                        raise UnsafeArchiveError(
                            f"link {member.name!r} points out of the tree ({member.linkname!r})"
                        )
                    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                    os.symlink(member.linkname, target)
                    links.add(name)
                    data = member.linkname.encode()
                    result.files[name] = Measured(
                        path=name,
                        size=len(data),
                        mode=0o777,
                        link=member.linkname,
                        sha256=hashlib.sha256(data).hexdigest(),
                        git_blob=git_blob_id(data) if git_blobs else None,
                    )
                    continue
                if member.islnk():
                    raise UnsafeArchiveError(f"hard link {member.name!r} is not allowed")
                if not member.isfile():
                    raise UnsafeArchiveError(
                        f"member {member.name!r} is a device, FIFO or other special file"
                    )
                if written + member.size > max_bytes:
                    raise UnsafeArchiveError(
                        f"archive unpacks to more than the limit of {max_bytes} bytes "
                        f"(at member {member.name!r})"
                    )
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                mode = normal_mode(member.mode)
                size, sha256, blob = _write_member(tar, member, target, mode, git_blobs)
                written += size
                result.files[name] = Measured(
                    path=name, size=size, mode=mode, sha256=sha256, git_blob=blob
                )
                if progress is not None:
                    progress(written)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeArchiveError(f"corrupt archive: {exc}") from None
    # Links were checked by name; check them again as the file system sees
    # them, now that every link of a chain exists.
    real_root = os.path.realpath(dest)
    for name in links:
        resolved = os.path.realpath(dest / name)
        if resolved != real_root and not resolved.startswith(real_root + os.sep):
            raise UnsafeArchiveError(f"link {name!r} resolves out of the tree")
    return result


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, mode: int, git_blobs: bool
) -> tuple[int, str, str | None]:
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % member.size, usedforsecurity=False) if git_blobs else None
    size = 0
    # O_EXCL and O_NOFOLLOW: never overwrite, never follow a link planted earlier.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                if blob is not None:
                    blob.update(chunk)
                out.write(chunk)
                size += len(chunk)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    if size != member.size:
        raise UnsafeArchiveError(f"member {member.name!r} is truncated")
    return size, digest.hexdigest(), blob.hexdigest() if blob else None


def measure_tree(root: Path, *, deep: bool = True) -> Unpacked:
    """Measure a release folder as it is on disk now (for drift checks): size,
    mode and modification time of every file, and with ``deep`` its sha256."""
    result = Unpacked(root=root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            full = Path(dirpath, name)
            if full.is_symlink():
                filenames.append(name)
                dirnames.remove(name)
        for name in filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                data = target.encode()
                result.files[rel] = Measured(
                    path=rel,
                    size=len(data),
                    mode=0o777,
                    link=target,
                    sha256=hashlib.sha256(data).hexdigest(),
                    mtime_ns=st.st_mtime_ns,
                )
                continue
            sha = None
            if deep:
                digest = hashlib.sha256()
                with full.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        digest.update(chunk)
                sha = digest.hexdigest()
            result.files[rel] = Measured(
                path=rel,
                size=st.st_size,
                mode=stat.S_IMODE(st.st_mode),
                sha256=sha,
                mtime_ns=st.st_mtime_ns,
            )
    return result


def write_manifest(manifest: Manifest, path: Path) -> None:
    from fleetcore.files import atomic_write

    atomic_write(path, json.dumps(manifest.to_json(), indent=1).encode())


def read_manifest(path: Path) -> Manifest:
    return Manifest.from_json(json.loads(path.read_bytes()), source=str(path))
