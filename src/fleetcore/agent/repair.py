"""What drift fixes may ask of the agent for the running release: a verified
pristine copy, a restart of its services, old releases cleaned up."""

from __future__ import annotations

import shutil
from pathlib import Path

from fleetcore.activate.select import select_activator
from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import activation_ctx
from fleetcore.agent.releases import clean_releases, role_config_of
from fleetcore.errors import VerifyError
from fleetcore.release import Manifest, read_manifest, unpack


class RepairKit:
    """What drift fixes may ask of the agent, for the running release."""

    def __init__(self, ctx: AgentContext, release: str, commit: str) -> None:
        self.ctx = ctx
        self.release = release
        self.commit = commit
        self._pristine: Path | None = None

    @property
    def release_dir(self) -> Path:
        return self.ctx.store.release_dir(self.release)

    def manifest(self) -> Manifest:
        return read_manifest(self.ctx.store.manifest_file(self.release))

    def pristine(self) -> Path:
        """A fresh, verified copy of the running release, fetched again from
        the source (the fetcher's cache makes that local for git)."""
        if self._pristine is not None:
            return self._pristine
        staging = self.ctx.store.staging / "pristine"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "fetch").mkdir(parents=True)
        fetched = self.ctx.source().fetch(self.commit, self.ctx.device.role, staging / "fetch")
        unpacked = unpack(
            fetched.archive,
            staging / "tree",
            prefix=fetched.prefix,
            max_bytes=self.ctx.config.disk.max_release_size.bytes,
            git_blobs=fetched.manifest.wants_git_blob,
        )
        problems = fetched.manifest.compare(unpacked)
        if problems:
            raise VerifyError(
                "the refetched release does not match its manifest: "
                + "; ".join(str(p) for p in problems)
            )
        self._pristine = staging / "tree"
        return self._pristine

    def restart(self) -> str:
        """Bring the running release's services up again through its activator."""
        name, activator = select_activator(
            self.ctx.pm,
            self.release_dir,
            role_config_of(self.ctx.store, self.release),
            source=self.ctx.role_file,
        )
        activator.start(activation_ctx(self.ctx, self.release, self.commit))
        return f"{name} activator started {self.release} again"

    def clean(self) -> list[str]:
        """Remove old releases, staging leftovers and fetch caches' garbage."""
        removed = clean_releases(self.ctx.store)
        staging = self.ctx.store.staging
        if staging.exists():
            for child in staging.iterdir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(f"staging/{child.name}")
        return removed

    def close(self) -> None:
        if self._pristine is not None:
            shutil.rmtree(self._pristine.parent, ignore_errors=True)
