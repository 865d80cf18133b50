"""What a fetcher plugin implements: a :class:`Source` of releases.

A fetcher brings three things from the fleet repo: the commit at the head of
a branch, a few small files at a commit (``fleet.toml``,
``devices/<id>.toml``, ``roles/<role>/role.toml``), and the archive of one
role at one commit, with the manifest the archive will be verified against.

A minimal fetcher, for a repo mirrored to a web server as plain tarballs::

    from attrs import frozen
    from fleetcore.fetch.interface import Fetched, Manifest
    from fleetcore.plugin import Fetcher, hookimpl

    @frozen(kw_only=True)
    class MirrorOptions:
        timeout: int = 30

    class MirrorSource:
        def __init__(self, settings, options):
            self.base = settings.repo.rstrip("/")
            self.options = options

        def head(self, branch):
            return http_get(f"{self.base}/refs/{branch}").decode().strip()

        def read(self, commit, paths):
            return {p: data for p in paths if (data := http_get_or_none(...))}

        def fetch(self, commit, role, workdir):
            archive = workdir / "role.tar"
            download(f"{self.base}/{commit}/{role}.tar", archive)
            manifest = Manifest.from_json(http_get(f"{self.base}/{commit}/{role}.json"))
            return Fetched(archive=archive, prefix="", manifest=manifest)

    @hookimpl
    def fleetcore_register_fetchers():
        yield Fetcher(name="mirror", summary="Tarballs from a web mirror",
                      config_type=MirrorOptions, factory=MirrorSource)

Raise :class:`fleetcore.errors.FetchError` for anything the network or the
remote did wrong; the agent retries with back-off and, failing that, keeps the
current release. The archive is untrusted: the agent unpacks it itself, member
by member, and checks every file against the manifest.

**Where the manifest comes from matters.** It must not be read from the same
archive it vouches for. A git fetcher derives it from the git tree (whose
object ids git has already checked); a server or mirror serves it separately.

The names here are defined in :mod:`fleetcore.plugin.protocols` (values in
:mod:`fleetcore.model`) and exported by :mod:`fleetcore.plugin` too.
"""

from fleetcore.plugin.protocols import Fetched, Source
from fleetcore.release import Manifest, ManifestEntry

__all__ = ["Fetched", "Manifest", "ManifestEntry", "Source"]
