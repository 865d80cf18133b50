"""The ``http-tarball`` fetcher: releases as the tarballs a forge serves.

**For operators.** Forges (Gitea, Forgejo, GitLab, GitHub) serve any commit
of a repository as a tarball over plain HTTPS, often from a CDN, without git
on the device. Give the URL templates in ``[source]``::

    [source]
    repo = "https://forge.example/org/fleet.git"   # branch heads: git ls-remote
    fetcher = "http-tarball"
    archive_url = "https://forge.example/org/fleet/archive/{commit}.tar.gz"
    raw_url = "https://forge.example/org/fleet/raw/{commit}/{path}"           # optional
    manifest_url = "https://releases.example/fleet/{commit}/{role}.json"      # optional
    timeout = "5m"

- ``archive_url`` (required): the archive of the whole repository at
  ``{commit}`` (tar, optionally gzip, bzip2 or xz compressed). A single
  top-level folder, as forges add (``fleet-<commit>/``), is detected.
- ``raw_url``: one file at ``{commit}`` and ``{path}``, for the few small
  files the agent reads (``fleet.toml``, ``devices/<id>.toml``). Without it
  they are read from the archive, which is then downloaded once and kept.
- ``manifest_url``: the release manifest of ``{role}`` at ``{commit}`` as JSON
  (the format of ``Manifest.to_json()``, e.g. written by a CI job).
- ``timeout``: the longest one download or git command may run.

Branch heads come from ``git ls-remote <repo>``, so ``git`` must be
installed; nothing else of git is used. Credentials in a URL
(``https://user:token@forge/...``) are sent as HTTP Basic authentication,
never to another host a redirect leads to, and error messages show them as
``https://***@forge/...``.

**Downloads resume.** The archive is downloaded into the cache folder; when
the connection drops or ``timeout`` is reached, what arrived is kept and the
next attempt continues with an HTTP ``Range`` request (``If-Range`` with the
server's ETag or Last-Modified date, so a changed file is never spliced onto
an old one). A server that answers ``200`` instead of ``206`` is downloaded
from the start. A slow link thus makes progress across the agent's retries.

**What verification means here.** With ``manifest_url``, the archive is
checked against a manifest from another source: as strong as that source.
Without it, the manifest is computed from the downloaded archive (sha256,
size and normalized mode of each file, link targets) in a streaming pass
right after the download. That guards the copy between download and
activation, not the archive's authenticity, which then rests on HTTPS and the
forge. The ``git`` fetcher verifies against git's own tree.
"""

# Imports inside functions are deliberate: the agent loads every fetcher
# at start, and pays only for what the selected one uses.

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from fleetcore.errors import FetchError, VerifyError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import Fetcher, SourceSettings
from fleetcore_git._common import (
    CorruptArchiveError,
    cache_folder,
    check_commit,
    check_role,
    clean_path,
    ls_remote_head,
    positive_duration,
    read_files,
    redact,
    repo_url,
    scan_role,
)

if TYPE_CHECKING:
    from fleetcore.fetch.interface import Fetched
    from fleetcore.http import Client, Response, TransportError
    from fleetcore.plugin.release import Manifest

# fleetcore.http (urllib) rather than requests: the standard library needs no
# install on the device, and imports far less per converge on a Raspberry Pi
# (requests brings urllib3, idna, charset_normalizer and certifi). What we need
# of HTTP, one GET with a Range header and a streamed body, urllib does well.

CHUNK = 1 << 16
KEEP_ARCHIVES = 2
"""Complete archives kept in the cache: the release being fetched and the
commit whose policy files were just read are often different commits."""
_PLACEHOLDER = r"\{(\w*)\}"
_CONTENT_RANGE = r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$"
_CACHE_FILE = r"^[0-9a-f]{32}\.(?:part|json|archive)$"


def _template(*required: str) -> Any:
    def check(_inst: Any, attr: Any, value: str | None) -> None:
        if value is None:
            return
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{attr.name} must be an http:// or https:// URL, got {value!r}")
        names = re.findall(_PLACEHOLDER, value)
        for name in names:
            if name not in required:
                allowed = ", ".join("{" + r + "}" for r in required)
                raise ValueError(
                    f"{attr.name} has an unknown placeholder {{{name}}}; it may use {allowed}"
                )
        for name in required:
            if name not in names:
                raise ValueError(f"{attr.name} must contain {{{name}}}")

    return check


@frozen(kw_only=True)
class TarballOptions:
    """Options of the ``http-tarball`` fetcher (keys of ``[source]``)."""

    archive_url: str = field(validator=checked(_template("commit")))
    """Template of the archive of the repository at ``{commit}``."""
    raw_url: str | None = field(default=None, validator=checked(_template("commit", "path")))
    """Template of one file at ``{commit}`` and ``{path}``; else read from the archive."""
    manifest_url: str | None = field(default=None, validator=checked(_template("commit", "role")))
    """Template of the JSON manifest of ``{role}`` at ``{commit}``; else computed."""
    timeout: Duration = field(default=Duration(120), validator=checked(positive_duration))
    """Longest one download or git command may run."""


def _fill(template: str, **values: str) -> str:
    from urllib.parse import quote

    # Plain replacement, not str.format: URLs may hold other braces.
    for name, value in values.items():
        template = template.replace("{" + name + "}", quote(value, safe="/"))
    return template


class TarballSource:
    """A :class:`fleetcore.fetch.interface.Source` for forge tarball URLs."""

    def __init__(self, settings: SourceSettings, options: TarballOptions) -> None:
        self.settings = settings
        self.options = options

    # -- the Source interface ---------------------------------------------------------

    def head(self, branch: str) -> str:
        return ls_remote_head(
            repo_url(self.settings.repo), branch, timeout=self.options.timeout.seconds
        )

    def read(self, commit: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        check_commit(commit)
        wanted = list(dict.fromkeys(p for p in paths if clean_path(p)))
        if self.options.raw_url is None:
            archive = self._download(commit)
            url = redact(_fill(self.options.archive_url, commit=commit))
            try:
                return read_files(archive, wanted, source=url, top_folder=True)
            except CorruptArchiveError:
                archive.unlink(missing_ok=True)
                raise
        found = {}
        for path in wanted:
            data = _get(
                _fill(self.options.raw_url, commit=commit, path=path),
                timeout=self.options.timeout.seconds,
            )
            if data is not None:
                found[path] = data
        return found

    def fetch(self, commit: str, role: str, workdir: Path) -> Fetched:
        import shutil

        from fleetcore.fetch.interface import Fetched

        check_commit(commit)
        check_role(role)
        # The small manifest first: no use downloading an archive without it.
        manifest = self._manifest(commit, role) if self.options.manifest_url else None
        cached = self._download(commit)
        # A copy, not a link: the agent's work folder is its own to change.
        archive = workdir / "role-archive"
        shutil.copyfile(cached, archive)
        url = redact(_fill(self.options.archive_url, commit=commit))
        try:
            prefix, computed = scan_role(
                archive,
                commit=commit,
                role=role,
                source=url,
                top_folder=True,
                measure=manifest is None,
            )
        except CorruptArchiveError:
            # Perhaps two versions spliced by a resume: start afresh next time.
            cached.unlink(missing_ok=True)
            raise
        manifest = manifest or computed
        assert manifest is not None
        return Fetched(archive=archive, prefix=prefix, manifest=manifest)

    # -- plumbing --------------------------------------------------------------------------

    def _manifest(self, commit: str, role: str) -> Manifest:
        import json

        from fleetcore.plugin.release import Manifest

        assert self.options.manifest_url is not None
        url = _fill(self.options.manifest_url, commit=commit, role=role)
        data = _get(url, timeout=self.options.timeout.seconds)
        if data is None:
            raise FetchError(
                f"no manifest for role {role!r} at commit {commit}: {redact(url)} was not found"
            )
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise VerifyError(f"{redact(url)}: manifest is not JSON: {exc}") from None
        manifest = Manifest.from_json(parsed, source=redact(url))
        if manifest.commit != commit or manifest.role != role:
            raise VerifyError(
                f"{redact(url)}: manifest is for role {manifest.role!r} at commit "
                f"{manifest.commit}, not role {role!r} at commit {commit}"
            )
        return manifest

    def _download(self, commit: str) -> Path:
        """The complete archive of ``commit`` in the cache, downloaded or
        resumed as needed."""
        import hashlib

        url = _fill(self.options.archive_url, commit=commit)
        cache = cache_folder(self.settings)
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        done = cache / f"{key}.archive"
        if done.exists():
            done.touch()  # most recently used: kept by _prune
            return done
        _download(
            url,
            cache / f"{key}.part",
            cache / f"{key}.json",
            timeout=self.options.timeout.seconds,
            progress=self.settings.progress,
            label=f"download {commit[:12]}",
        )
        (cache / f"{key}.part").replace(done)
        (cache / f"{key}.json").unlink(missing_ok=True)
        _prune(cache, keep=key)
        return done


def _prune(cache: Path, keep: str) -> None:
    """Drop partial downloads of other URLs and all but the newest archives."""
    ours = [
        p for p in cache.iterdir() if re.match(_CACHE_FILE, p.name) and not p.name.startswith(keep)
    ]
    archives = sorted(
        (p for p in ours if p.suffix == ".archive"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in [p for p in ours if p.suffix != ".archive"] + archives[KEEP_ARCHIVES - 1 :]:
        path.unlink(missing_ok=True)


# -- HTTP -------------------------------------------------------------------------------------


_HTTP: Client | None = None


def _open(url: str, headers: Mapping[str, str], timeout: float) -> Response:
    """GET ``url``, following redirects: forges send archives from a CDN.
    Credentials in the URL go as HTTP Basic authentication to that host
    only, never along a redirect (see :mod:`fleetcore.http`)."""
    from fleetcore.http import Client

    global _HTTP  # noqa: PLW0603 - one client per process
    if _HTTP is None:
        _HTTP = Client(redirects="follow")
    return _HTTP.request("GET", url, headers=headers, timeout=timeout)


def _get(url: str, *, timeout: float) -> bytes | None:
    """The body at ``url``; None for 404 and 410; FetchError otherwise."""
    from fleetcore.http import StatusError, TransportError

    try:
        with _open(url, {}, timeout) as response:
            return response.read()
    except StatusError as exc:
        if exc.status in (404, 410):
            return None
        raise FetchError(f"GET {redact(url)} failed: HTTP {exc.status} {exc.reason}") from None
    except TransportError as exc:
        raise FetchError(f"GET {redact(url)} failed: {_reason(exc)}") from None


def _reason(exc: TransportError) -> str:
    reason = exc.reason
    if isinstance(reason, str) or (isinstance(reason, OSError) and reason.errno is not None):
        return redact(str(reason))
    return redact(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)


def _download(
    url: str,
    part: Path,
    meta_path: Path,
    *,
    timeout: float,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
    label: str = "download",
) -> None:
    """Complete ``part`` with the body at ``url``, resuming what is there
    (a meter from ``progress`` follows the bytes, when given).

    ``meta_path`` keeps the validators (ETag, Last-Modified) the partial bytes
    came with, for ``If-Range``. Raises :class:`FetchError` when the
    download stops; the bytes received are kept for the next call.
    """
    import json
    import time

    from fleetcore.http import StatusError, TransportError

    deadline = time.monotonic() + timeout
    for _attempt in range(3):  # at most two restarts from zero
        offset = part.stat().st_size if part.exists() else 0
        meta: dict[str, str] = {}
        if offset and meta_path.exists():
            try:
                meta = json.loads(meta_path.read_bytes())
            except ValueError:
                meta = {}
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            # If-Range: "send the rest if it is still the same file, else all of it".
            validator = meta.get("etag", "")
            if not validator or validator.startswith("W/"):
                validator = meta.get("last_modified", "")
            if validator:
                headers["If-Range"] = validator
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            response = _open(url, headers, remaining)
        except StatusError as exc:
            if exc.status == 416 and offset:
                total = _total_of(exc.headers.get("Content-Range", ""))
                if total == offset:
                    return  # everything had arrived; only the rename was missing
                _restart(part, meta_path)
                continue
            raise FetchError(f"GET {redact(url)} failed: HTTP {exc.status} {exc.reason}") from None
        except TransportError as exc:
            raise FetchError(f"GET {redact(url)} failed: {_reason(exc)}") from None
        with response:
            start = 0
            etag = response.headers.get("ETag", "")
            if response.status == 206:
                match = re.match(_CONTENT_RANGE, response.headers.get("Content-Range", "").strip())
                changed = bool(etag and meta.get("etag") and etag != meta["etag"])
                if match is None or int(match.group(1)) != offset or changed:
                    _restart(part, meta_path)
                    continue
                start = offset
            else:
                # 200: the server ignored the range or the file changed.
                meta_path.write_text(
                    json.dumps(
                        {
                            "url": redact(url),
                            "etag": etag,
                            "last_modified": response.headers.get("Last-Modified", ""),
                        }
                    )
                )
            length = response.headers.get("Content-Length")
            expected = start + int(length) if length and length.isdigit() else None
            update = progress(label, expected) if progress is not None else None
            _receive(response, part, start, expected, url=url, deadline=deadline, update=update)
            return
    size = part.stat().st_size if part.exists() else 0
    raise FetchError(
        f"download of {redact(url)} did not finish (timeout {timeout:g}s, or the "
        f"file kept changing); {size} bytes kept, the next fetch resumes"
    )


def _receive(
    response: Response,
    part: Path,
    start: int,
    expected: int | None,
    *,
    url: str,
    deadline: float,
    update: Callable[[int], None] | None = None,
) -> None:
    import time

    from fleetcore.http import Timeout, TransportError

    with part.open("r+b" if start else "wb") as out:
        out.seek(start)
        out.truncate()
        try:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                if update is not None:
                    update(out.tell())
                if time.monotonic() > deadline:
                    raise Timeout(
                        TimeoutError("the fetcher's timeout was reached"),
                        method="GET",
                        url=response.url,
                    )
        except TransportError as exc:
            out.flush()
            raise FetchError(
                f"download of {redact(url)} was interrupted ({_reason(exc)}); "
                f"{out.tell()} bytes kept, the next fetch resumes"
            ) from None
        size = out.tell()
    if expected is not None and size != expected:
        raise FetchError(
            f"download of {redact(url)} stopped at {size} of {expected} bytes; "
            f"{size} bytes kept, the next fetch resumes"
        )


def _restart(part: Path, meta_path: Path) -> None:
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def _total_of(content_range: str) -> int | None:
    match = re.match(r"^bytes\s+\*/(\d+)$", content_range.strip())
    return int(match.group(1)) if match else None


@hookimpl
def fleetcore_register_fetchers() -> Sequence[Fetcher]:
    return [
        Fetcher(
            name="http-tarball",
            summary="Forge tarball URLs over HTTP(S), resumable; no git history on the device",
            config_type=TarballOptions,
            factory=TarballSource,
        )
    ]
