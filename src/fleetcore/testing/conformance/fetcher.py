"""The conformance kit of fetchers (:class:`~fleetcore.plugin.types.Fetcher`).

Subclass :class:`FetcherKit` and define the fixture ``record``; define
``options`` (the keys of ``[source]`` besides ``repo``, ``branch`` and
``fetcher``) when the defaults do not do, ``kit_repo`` and ``repo_url`` when
the repository must live somewhere else (under a ``git daemon``), and
``publish`` when the remote must be told about each new commit (a forge
serving tarballs)::

    class TestMirrorFetcher(FetcherKit):
        @pytest.fixture
        def record(self):
            (record,) = mirror.fleetcore_register_fetchers()
            return record

        @pytest.fixture
        def options(self, mirror_server):
            return {"url": mirror_server.url}

        @pytest.fixture
        def publish(self, mirror_server):
            return mirror_server.publish   # (repo, commit) -> None

The kit makes a fleet repository with real git (two commits; a symbolic
link, an executable, a binary file, a second role) and checks that:

- the record is well formed and ``factory`` makes a
  :class:`~fleetcore.fetch.interface.Source`;
- ``head(branch)`` is the branch's full commit id, and an unknown branch is a
  :class:`~fleetcore.errors.FetchError`;
- ``read()`` returns exactly the files asked for that exist, as bytes, at
  the commit asked for (missing files and folders are left out);
- ``fetch()`` writes an archive into the work folder whose role unpacks, as
  the agent unpacks it, to exactly what its manifest says, and what was
  committed;
- an unknown commit is a ``FetchError`` (never another exception), and an
  unknown role a :class:`~fleetcore.errors.FleetcoreError`;
- two sources with their own caches fetch the same thing (determinism).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from fleetcore.errors import FetchError, FleetcoreError
from fleetcore.fetch.interface import Fetched, Source
from fleetcore.plugin.types import Fetcher, SourceSettings
from fleetcore.release import Manifest, unpack
from fleetcore.testing.conformance import (
    changes_between,
    expect_error,
    fail,
    missing_fixture,
    tree_state,
)
from fleetcore.testing.contracts import check_summary, structure_options
from fleetcore.testing.gitrepo import FleetRepo

__all__ = ["FIRST", "SECOND", "FetcherKit", "History", "check_fetched", "check_fetcher_record"]

ROLE = "web"
FIRST: dict[str, str | bytes | None] = {
    "fleet.toml": "[fleet]\nname = 'kit'\n",
    "devices/kit-device-1.toml": "role = 'web'\n",
    "roles/web/role.toml": "# the kit's role\n",
    "roles/web/activate.sh": "#!/bin/sh\necho kit\n",
    "roles/web/config/app.conf": "marker=first\n",
    "roles/web/data.bin": bytes(range(256)) * 16,
    "roles/other/role.toml": "# another role\n",
}
"""The files of the kit's first commit (plus ``roles/web/current.conf``, a
link to ``config/app.conf``)."""
SECOND: dict[str, str | bytes | None] = {
    "fleet.toml": "[fleet]\nname = 'kit, second'\n",
    "roles/web/config/app.conf": "marker=second\n",
    "roles/web/added.txt": "added in the second commit\n",
    "roles/web/data.bin": None,
}
"""What the second commit changes (None: deleted)."""
LINK = ("current.conf", "config/app.conf")
UNKNOWN_COMMIT = hashlib.sha1(b"not in the kit's repo", usedforsecurity=False).hexdigest()


@attrs.frozen
class History:
    """The kit's repository and its two commits, oldest first."""

    repo: FleetRepo
    first: str
    second: str

    def role_files(self, commit: str) -> dict[str, bytes]:
        """The regular files of the role at ``commit`` (link excluded)."""
        files = dict(FIRST)
        if commit == self.second:
            files.update(SECOND)
        prefix = f"roles/{ROLE}/"
        return {
            name.removeprefix(prefix): value.encode() if isinstance(value, str) else value
            for name, value in files.items()
            if name.startswith(prefix) and value is not None
        }


def check_fetcher_record(record: Fetcher, settings: SourceSettings, options: Any) -> Source:
    """Check a :class:`~fleetcore.plugin.types.Fetcher` record and return the
    source its factory makes from ``settings`` and ``options`` (a dict, as
    in ``[source]``)."""
    if not isinstance(record, Fetcher):
        fail(f"expected a Fetcher record, got {record!r}")
    check_summary(record)
    if not callable(record.factory):
        fail(f"{record.name}: factory must be callable")
    source = record.factory(settings, structure_options(record, options))
    for method in ("head", "read", "fetch"):
        if not callable(getattr(source, method, None)):
            fail(f"{record.name}: the source made by factory() has no {method}() method")
    return source


def check_fetched(
    name: str, fetched: Any, *, commit: str, role: str, workdir: Path, dest: Path
) -> dict[str, Any]:
    """Unpack ``fetched`` as the agent does into ``dest`` and check it against
    its manifest; return the :func:`~fleetcore.testing.conformance.tree_state`
    of what was unpacked."""
    if not isinstance(fetched, Fetched):
        fail(f"{name}: fetch() must return a fleetcore.fetch.interface.Fetched, got {fetched!r}")
    if not isinstance(fetched.manifest, Manifest):
        fail(f"{name}: Fetched.manifest must be a fleetcore.release.Manifest")
    archive = Path(fetched.archive)
    if not archive.resolve().is_relative_to(workdir.resolve()):
        fail(f"{name}: the archive {archive} must be written into the work folder {workdir}")
    if not archive.is_file():
        fail(f"{name}: the archive {archive} does not exist")
    if (fetched.manifest.commit, fetched.manifest.role) != (commit, role):
        fail(
            f"{name}: the manifest is of role {fetched.manifest.role!r} at "
            f"{fetched.manifest.commit}, asked for role {role!r} at {commit}"
        )
    unpacked = unpack(
        archive,
        dest,
        prefix=fetched.prefix,
        max_bytes=1 << 30,
        git_blobs=fetched.manifest.wants_git_blob,
    )
    problems = fetched.manifest.compare(unpacked)
    if problems:
        fail(
            f"{name}: the fetched archive does not match its manifest: "
            + "; ".join(str(p) for p in problems)
        )
    return tree_state(dest)


class FetcherKit:
    """Conformance tests for a fetcher; see the module's documentation."""

    branch: ClassVar[str] = "main"
    role: ClassVar[str] = ROLE

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> Fetcher:
        missing_fixture("FetcherKit", "record", "the Fetcher record your plugin registers")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        """The fetcher's keys of ``[source]``, as a TOML table."""
        return {}

    @pytest.fixture
    def kit_repo(self, tmp_path: Path) -> FleetRepo:
        """The (empty) repository the kit commits to."""
        return FleetRepo.create(tmp_path / "kit-fleet", branch=self.branch)

    @pytest.fixture
    def repo_url(self, kit_repo: FleetRepo) -> str:
        """``[source] repo``: how the fetcher reaches ``kit_repo``."""
        return kit_repo.url

    @pytest.fixture
    def publish(self) -> Callable[[FleetRepo, str], None]:
        """Called with the repository and each new commit, to make it available."""
        return lambda repo, commit: None

    # -- the kit's own fixtures --------------------------------------------------------

    @pytest.fixture
    def history(self, kit_repo: FleetRepo, publish: Callable[[FleetRepo, str], None]) -> History:
        kit_repo.write(FIRST)
        os.symlink(LINK[1], kit_repo.path / "roles" / ROLE / LINK[0])
        first = kit_repo.commit(message="kit: first")
        publish(kit_repo, first)
        second = kit_repo.commit(SECOND, "kit: second")
        publish(kit_repo, second)
        return History(kit_repo, first, second)

    @pytest.fixture
    def make_source(
        self, record: Fetcher, options: Mapping[str, Any], repo_url: str, tmp_path: Path
    ) -> Callable[..., Source]:
        """``make_source(cache="cache")``: a new source, with a cache folder of its own."""

        def make(cache: str = "cache") -> Source:
            settings = SourceSettings(
                repo=repo_url, branch=self.branch, cache_dir=tmp_path / "kit-cache" / cache
            )
            return check_fetcher_record(record, settings, options)

        return make

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> Callable[[str], Path]:
        def make(name: str) -> Path:
            path = tmp_path / "kit-work" / name
            path.mkdir(parents=True)
            return path

        return make

    # -- the tests ------------------------------------------------------------------------

    def test_record_and_factory(self, make_source: Callable[..., Source]) -> None:
        make_source()

    def test_head_is_the_full_commit_id_of_the_branch(
        self, history: History, make_source: Callable[..., Source], record: Fetcher
    ) -> None:
        head = make_source().head(self.branch)
        if head != history.second:
            fail(f"{record.name}: head({self.branch!r}) is {head!r}, not {history.second}")

    def test_head_of_an_unknown_branch_is_a_fetch_error(
        self, history: History, make_source: Callable[..., Source], record: Fetcher
    ) -> None:
        with expect_error(FetchError, record, "head() of a branch that does not exist"):
            make_source().head("no-such-branch-in-the-kit")

    def test_read_returns_the_files_asked_for(
        self, history: History, make_source: Callable[..., Source], record: Fetcher
    ) -> None:
        source = make_source()
        wanted = ["fleet.toml", "devices/kit-device-1.toml", "devices/missing.toml", "roles/web"]
        for commit, fleet in ((history.second, SECOND), (history.first, FIRST)):
            got = source.read(commit, wanted)
            expected = {
                "fleet.toml": str(fleet["fleet.toml"]).encode(),
                "devices/kit-device-1.toml": str(FIRST["devices/kit-device-1.toml"]).encode(),
            }
            if not isinstance(got, Mapping) or dict(got) != expected:
                fail(
                    f"{record.name}: read({commit[:12]}, {wanted}) returned {got!r}; expected "
                    f"{expected!r} (missing files and folders are left out, contents are bytes "
                    "of the commit asked for)"
                )

    def test_fetch_gives_what_was_committed_and_its_manifest(
        self,
        history: History,
        make_source: Callable[..., Source],
        workdir: Callable[[str], Path],
        record: Fetcher,
        tmp_path: Path,
    ) -> None:
        source = make_source()
        for commit in (history.first, history.second):
            work = workdir(commit)
            dest = tmp_path / "kit-unpacked" / commit
            fetched = source.fetch(commit, self.role, work)
            check_fetched(
                record.name, fetched, commit=commit, role=self.role, workdir=work, dest=dest
            )
            expected = history.role_files(commit)
            files = {
                p.relative_to(dest).as_posix()
                for p in dest.rglob("*")
                if p.is_file() and not p.is_symlink()
            }
            if files != set(expected):
                fail(
                    f"{record.name}: role {self.role} at {commit[:12]} has "
                    f"{sorted(expected)}, the fetcher gave {sorted(files)}"
                )
            for rel, content in expected.items():
                if (dest / rel).read_bytes() != content:
                    fail(f"{record.name}: {rel} at {commit[:12]} is not what was committed")
            if os.readlink(dest / LINK[0]) != LINK[1]:
                fail(f"{record.name}: the symbolic link {LINK[0]} was not kept")
            if not (dest / "activate.sh").stat().st_mode & stat.S_IXUSR:
                fail(f"{record.name}: activate.sh lost its executable bit")

    def test_an_unknown_commit_is_a_fetch_error(
        self,
        history: History,
        make_source: Callable[..., Source],
        workdir: Callable[[str], Path],
        record: Fetcher,
    ) -> None:
        source = make_source()
        with expect_error(FetchError, record, "read() of a commit that does not exist"):
            source.read(UNKNOWN_COMMIT, ["fleet.toml"])
        with expect_error(FetchError, record, "fetch() of a commit that does not exist"):
            source.fetch(UNKNOWN_COMMIT, self.role, workdir("unknown"))

    def test_an_unknown_role_is_an_error(
        self,
        history: History,
        make_source: Callable[..., Source],
        workdir: Callable[[str], Path],
        record: Fetcher,
    ) -> None:
        with expect_error(FleetcoreError, record, "fetch() of a role that does not exist"):
            make_source().fetch(history.second, "no-such-role", workdir("no-role"))

    def test_fetching_is_deterministic(
        self,
        history: History,
        make_source: Callable[..., Source],
        workdir: Callable[[str], Path],
        record: Fetcher,
        tmp_path: Path,
    ) -> None:
        states, manifests = [], []
        for name in ("one", "two"):
            source = make_source(cache=name)
            for again in ("a", "b"):
                work = workdir(f"{name}-{again}")
                fetched = source.fetch(history.first, self.role, work)
                state = check_fetched(
                    record.name,
                    fetched,
                    commit=history.first,
                    role=self.role,
                    workdir=work,
                    dest=tmp_path / "kit-det" / f"{name}-{again}",
                )
                # Unpacking sets modification times; what must agree is the content.
                states.append({p: v[:3] + v[4:] if v[0] == "file" else v for p, v in state.items()})
                manifests.append(fetched.manifest.to_json())
        for i in range(1, len(states)):
            if manifests[i] != manifests[0]:
                fail(f"{record.name}: two fetches of one commit gave different manifests")
            if states[i] != states[0]:
                fail(
                    f"{record.name}: two fetches of one commit differ in "
                    f"{changes_between(states[0], states[i])}"
                )
