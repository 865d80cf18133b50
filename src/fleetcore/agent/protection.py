"""Rollback protection: the agent never moves back in history on the
word of whoever can move a branch.

A commit that is an ancestor of the one the device runs (a branch reset or
force-pushed to an old, perhaps vulnerable release) is deployed only when
the desired state says why in a way only an operator causes: a fleet pin, a
device lock, a rollout's stable commit (a rollout aborted or halted back to
it), or an emergency. A commit unrelated to the running one (a rewritten
history) is refused the same way, except for a device following another
branch by an operator's override, whose history may well diverge.

How two commits relate is the source's answer (the ``relation`` method of a
fetcher's source; the server's mirror in managed mode). A source that
cannot tell leaves the device unprotected, which is logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from fleetcore.errors import FetchError, FleetcoreError
from fleetcore.plugin.types import CommitProof

log = logging.getLogger("fleetcore.agent")

OPERATOR_WHYS = frozenset({"pin", "lock", "stable", "emergency"})
"""Desired states only an operator causes: they may send a device back."""

RELATIONS = ("same", "descendant", "ancestor", "unrelated")

_warned: set[str] = set()


def relation_of(source: Any, current: str, commit: str) -> str | None:
    """How ``commit`` relates to ``current``: ``descendant`` (it contains
    ``current``), ``ancestor``, ``unrelated`` or ``same``; None when the
    source cannot tell. Raises FetchError when it cannot reach the repo."""
    if current == commit:
        return "same"
    ask = getattr(source, "relation", None)
    if ask is None:
        name = type(source).__name__
        if name not in _warned:
            _warned.add(name)
            log.warning("%s cannot tell how commits relate: no rollback protection", name)
        return None
    try:
        answer = ask(current, commit)
    except FetchError:
        raise
    except FleetcoreError as exc:
        # E.g. a control server from before rollback protection (404): in
        # managed mode the server is trusted, so this is logged, not fatal.
        log.warning("cannot tell how %s relates to %s: %s", commit, current, exc)
        return None
    return answer if answer in RELATIONS else None


def rollback_refusal(relation: str | None, current: str, commit: str, why: str) -> str | None:
    """Why moving from ``current`` to ``commit`` is refused, or None."""
    if relation in (None, "same", "descendant") or why in OPERATOR_WHYS:
        return None
    if relation == "ancestor":
        return (
            f"rollback refused: {commit} is an ancestor of {current}, which this device runs, "
            f"and the desired state ({why}) is no pin, lock, stable commit or emergency"
        )
    if why == "override":
        return None  # another branch, on an operator's override: its history may diverge
    return (
        f"rollback refused: {commit} is unrelated to {current}, which this device runs "
        f"(rewritten history?), and the desired state ({why}) is no pin, lock, stable "
        "commit or emergency"
    )


def commit_proof(source: Any, commit: str, role: str) -> CommitProof | None:
    """The commit's objects for the verify checks (a signature check), or
    None when the source cannot give them; the check then refuses."""
    ask = getattr(source, "proof", None)
    if ask is None:
        return None
    try:
        proof = ask(commit, role)
    except FleetcoreError as exc:
        log.warning("cannot get the objects of commit %s to verify it: %s", commit, exc)
        return None
    return proof if isinstance(proof, CommitProof) else None


def bundle_refusal(
    options: dict[str, Any], commit: str, signed: tuple[bytes, bytes | None] | None
) -> str | None:
    """Why a bundle is refused by ``[verify.signature]`` (its header, which
    holds the manifest of every file, must be signed by an allowed key), or None."""
    from pathlib import Path

    from fleetcore import sshsig
    from fleetcore.bundle import NAMESPACE

    what = f"the bundle of commit {commit}"
    if signed is None or signed[1] is None:
        return f"{what} is not signed (`fleetcore bundle create --sign KEY`)"
    revoked = options.get("revoked_keys")
    try:
        return sshsig.verify(
            allowed_signers=Path(options["allowed_signers"]),
            revoked_keys=Path(revoked) if revoked else None,
            namespace=NAMESPACE,
            data=signed[0],
            signature=signed[1],
            what=what,
        )
    except (KeyError, OSError) as exc:
        return f"{what} cannot be verified: {exc}"


def commit_time(source: Any, commit: str, role: str) -> dt.datetime | None:
    """When ``commit`` was committed (its committer line), from the source's
    commit objects; None when the source cannot say."""
    proof = commit_proof(source, commit, role)
    if proof is None:
        return None
    head = proof.commit_object.partition(b"\n\n")[0]
    for line in head.split(b"\n"):
        if line.startswith(b"committer "):
            try:
                stamp = int(line.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                return None
            return dt.datetime.fromtimestamp(stamp, dt.UTC)
    return None
