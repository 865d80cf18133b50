"""The ``signature`` verify check: deploy only commits an allowed person signed.

**For operators.** Turn it on in the device's ``agent.toml``, so the trust
root lives on the device and never in the repo it protects::

    [verify.signature]
    allowed_signers = "/etc/fleetcore/allowed_signers"   # git's SSH format
    revoked_keys = "/etc/fleetcore/revoked_keys"         # optional: a KRL or key list

``allowed_signers`` is git's ``gpg.ssh.allowedSignersFile`` format (one
``principal [options] key-type key`` per line). Sign commits with
``git -c gpg.format=ssh -c user.signingkey=KEY commit -S`` (or
``git config commit.gpgsign true``).

**The rule: the commit a device deploys must itself carry a valid SSH
signature by an allowed signer** (as Flux checks the head it applies). A
merge or a release commit made by a tool must therefore be signed by the
tool's key, listed in ``allowed_signers``; an unsigned commit on top of a
signed one is refused, whoever pushed it.

**What is checked**, on the commit's raw objects (the device's git cache,
or the control server in managed mode; nothing of them is trusted):

1. the commit object hashes to the commit id being deployed;
2. its ``gpgsig`` is an SSH signature that ``ssh-keygen -Y verify`` accepts
   for namespace ``git``, by a principal of ``allowed_signers`` whose key is
   not in ``revoked_keys`` (exactly what ``git verify-commit`` does);
3. the commit's tree, its ``roles`` tree and the role's tree, recomputed
   from the release's manifest (git blob ids, modes, names), hash to the
   ids the signed commit names: a release whose files were swapped under a
   signed commit id is refused. The ``manifest`` check then ties every
   unpacked file to that manifest.

Needs ``ssh-keygen`` (OpenSSH 8.2 or later) on the device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import field, frozen

from fleetcore.plugin import Check, CheckContext, CommitProof, Finding, hookimpl
from fleetcore.plugin.options import checked
from fleetcore.plugin.signing import verify

SSH_ARMOR = b"-----BEGIN SSH SIGNATURE-----"


def _existing(_inst: Any, attr: Any, value: Path | None) -> None:
    if value is not None and not value.is_file():
        raise ValueError(f"{attr.name}: no file {value}")


@frozen(kw_only=True)
class SignatureOptions:
    """``[verify.signature]`` in ``agent.toml``."""

    allowed_signers: Path = field(validator=checked(_existing))
    revoked_keys: Path | None = field(default=None, validator=checked(_existing))
    namespace: str = "git"
    """The signature namespace (``git`` for commits signed by git)."""


def _git_id(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(kind + b" %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def split_signature(commit_object: bytes) -> tuple[bytes, bytes | None]:
    """(the signed payload, the armored signature or None): the commit object
    without its ``gpgsig`` header, as git hands it to the verifier."""
    head, sep, message = commit_object.partition(b"\n\n")
    payload: list[bytes] = []
    signature: list[bytes] = []
    in_sig = False
    for line in head.split(b"\n"):
        if line.startswith(b"gpgsig "):
            in_sig = True
            signature.append(line[len(b"gpgsig ") :])
        elif in_sig and line.startswith(b" "):
            signature.append(line[1:])
        else:
            in_sig = False
            payload.append(line)
    body = b"\n".join(payload) + sep + message
    return body, (b"\n".join(signature) + b"\n" if signature else None)


def _tree_entries(tree: bytes) -> dict[bytes, tuple[bytes, str]]:
    """A raw tree object's entries: name -> (mode, object id)."""
    entries: dict[bytes, tuple[bytes, str]] = {}
    pos = 0
    while pos < len(tree):
        space = tree.index(b" ", pos)
        nul = tree.index(b"\0", space)
        oid = tree[nul + 1 : nul + 21].hex()
        entries[tree[space + 1 : nul]] = (tree[pos:space], oid)
        pos = nul + 21
    return entries


def role_tree_id(ctx: CheckContext) -> str | None:
    """The git tree id of the role's folder, recomputed from the manifest
    (None when the manifest has no git blob ids to do it with)."""
    assert ctx.manifest is not None
    root: dict[str, Any] = {}
    for entry in ctx.manifest.entries:
        if not entry.git_blob:
            return None
        mode = (
            b"120000" if entry.link is not None else b"100755" if entry.mode & 0o111 else b"100644"
        )
        *dirs, name = entry.path.split("/")
        node = root
        for part in dirs:
            node = node.setdefault(part, {})
        node[name] = (mode, entry.git_blob)

    def tree_id(node: dict[str, Any]) -> str:
        items = []
        for name, value in node.items():
            if isinstance(value, dict):
                items.append((name + "/", b"40000", name, tree_id(value)))
            else:
                items.append((name, value[0], name, value[1]))
        # git orders a tree's entries by name, a folder's name as if it ended in "/".
        items.sort(key=lambda item: item[0].encode("utf-8", "surrogateescape"))
        data = b"".join(
            mode + b" " + name.encode("utf-8", "surrogateescape") + b"\0" + bytes.fromhex(oid)
            for _key, mode, name, oid in items
        )
        return _git_id(b"tree", data)

    return tree_id(root)


def verify_signature(
    options: SignatureOptions, commit: str, payload: bytes, signature: bytes
) -> str | None:
    """Why the signature does not hold, or None when an allowed, unrevoked
    signer made it."""
    return verify(
        allowed_signers=options.allowed_signers,
        revoked_keys=options.revoked_keys,
        namespace=options.namespace,
        data=payload,
        signature=signature,
        what=f"commit {commit}",
    )


def check_proof(ctx: CheckContext, options: SignatureOptions, proof: CommitProof) -> list[str]:
    """Every reason to refuse the release; empty when it is the signed commit's."""
    commit = ctx.commit
    if _git_id(b"commit", proof.commit_object) != commit:
        return [f"the commit object given for {commit} is not that commit's (its hash differs)"]
    payload, signature = split_signature(proof.commit_object)
    if signature is None:
        return [f"commit {commit} is not signed"]
    if not signature.lstrip().startswith(SSH_ARMOR):
        return [f"commit {commit} carries no SSH signature (OpenPGP is not supported)"]
    problem = verify_signature(options, commit, payload, signature)
    if problem:
        return [problem]
    head = payload.partition(b"\n\n")[0].split(b"\n")
    tree = next((line[5:].decode() for line in head if line.startswith(b"tree ")), "")
    if _git_id(b"tree", proof.root_tree) != tree:
        return [f"the root tree given for commit {commit} is not the one it names"]
    roles = _tree_entries(proof.root_tree).get(b"roles")
    if roles is None or _git_id(b"tree", proof.roles_tree) != roles[1]:
        return [f"the roles tree given for commit {commit} is not the one it names"]
    role = _tree_entries(proof.roles_tree).get(ctx.device.role.encode())
    computed = role_tree_id(ctx)
    if computed is None:
        return [f"the manifest has no git blob ids: it cannot be tied to signed commit {commit}"]
    if role is None or role[1] != computed:
        return [
            f"the release's files are not the tree of signed commit {commit} "
            f"(roles/{ctx.device.role} was swapped)"
        ]
    return []


def run(ctx: CheckContext) -> list[Finding]:
    options: SignatureOptions = ctx.options
    if ctx.manifest is None or ctx.proof is None:
        return [
            Finding(
                message=f"commit {ctx.commit} cannot be verified: its source gave no commit "
                "objects (the git fetcher and the control server do)",
                subject="signature",
                code="signature-unverifiable",
            )
        ]
    return [
        Finding(message=reason, subject="signature", code="signature-refused")
        for reason in check_proof(ctx, options, ctx.proof)
    ]


@hookimpl
def fleetcore_register_verify_checks() -> Iterator[Check]:
    yield Check(
        name="signature",
        summary="The commit is signed by an allowed SSH key (agent.toml [verify.signature])",
        run=run,
        config_type=SignatureOptions,
        default=False,
    )
