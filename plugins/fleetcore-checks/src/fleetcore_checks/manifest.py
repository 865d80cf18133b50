"""The ``manifest`` verify check: every file of a release is what its manifest says.

Runs on every release, on the staging copy, before anything from it runs.
It compares the trusted manifest (path, size, mode and sha256 or git blob id
of every file) with what the unpacker measured while writing, so no file is
read twice. Any difference refuses the release: a missing or extra file, a
changed checksum, size or mode, a link pointing elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import Check, CheckContext, Finding


def run(ctx: CheckContext) -> list[Finding]:
    if ctx.manifest is None:
        return [
            Finding(
                message="there is no manifest to verify the release against",
                subject="manifest",
                code="manifest-missing",
            )
        ]
    if ctx.unpacked is None:
        return [
            Finding(
                message="the release was not measured while unpacking, "
                "so it cannot be compared with its manifest",
                subject="manifest",
                code="manifest-missing",
            )
        ]
    return ctx.manifest.compare(ctx.unpacked)


@hookimpl
def fleetcore_register_verify_checks() -> Iterator[Check]:
    yield Check(
        name="manifest",
        summary="Every file matches the release manifest",
        run=run,
    )
