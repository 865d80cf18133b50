"""Signed releases on real git and real SSH keys (ssh-keygen): a device with
``[verify.signature]`` deploys only commits an allowed signer signed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fleetcore.testing.gitrepo import FleetRepo, script_role


class Keys:
    """SSH keys made with ssh-keygen, and the allowed_signers file listing some."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def make(self, name: str) -> Path:
        key = self.root / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
            check=True,
        )
        return key

    def allowed(self, **keys: Path) -> Path:
        path = self.root / "allowed_signers"
        lines = [
            f"{who}@example.com {(key.with_suffix('.pub')).read_text().strip()}"
            for who, key in keys.items()
        ]
        path.write_text("\n".join(lines) + "\n")
        return path


def sign_with(repo: FleetRepo, key: Path | None) -> None:
    """Commits from now on are signed with ``key`` (None: unsigned)."""
    if key is None:
        repo.git("config", "commit.gpgsign", "false")
        return
    repo.git("config", "gpg.format", "ssh")
    repo.git("config", "user.signingkey", str(key))
    repo.git("config", "commit.gpgsign", "true")


def _history(dev: Any) -> list[dict[str, Any]]:
    lines = (dev.state / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


def _device(device: Any, allowed: Path, revoked: Path | None = None) -> Any:
    extra = f'[verify.signature]\nallowed_signers = "{allowed}"\n'
    if revoked is not None:
        extra += f'revoked_keys = "{revoked}"\n'
    return device(extra=extra, max_failures=10)


def test_only_commits_signed_by_an_allowed_key_are_deployed(
    device: Any, fleet_repo: FleetRepo, keys: Keys
) -> None:
    alice, mallory = keys.make("alice"), keys.make("mallory")
    allowed = keys.allowed(alice=alice)
    sign_with(fleet_repo, alice)
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    # git itself agrees the commit is signed by an allowed signer.
    fleet_repo.git("-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", v1)
    dev = _device(device, allowed)
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1), result.message

    cases = []
    # Unsigned.
    sign_with(fleet_repo, None)
    cases.append((fleet_repo.commit(script_role("v2"), "unsigned"), "is not signed"))
    # Signed by a key nobody allowed.
    sign_with(fleet_repo, mallory)
    cases.append((fleet_repo.commit(script_role("v3"), "mallory"), "not in"))
    # A signed commit whose tree was swapped: the same headers, message and
    # signature over another tree (a new commit id, as git computes it).
    sign_with(fleet_repo, alice)
    signed = fleet_repo.commit(script_role("v4"), "alice signs v4")
    evil_tree = fleet_repo.git("rev-parse", f"{v1}^{{tree}}")
    raw = fleet_repo.git("cat-file", "commit", signed)
    forged = raw.replace(raw.splitlines()[0], f"tree {evil_tree}", 1)
    swapped = subprocess.run(
        ["git", "-C", str(fleet_repo.path), "hash-object", "-t", "commit", "-w", "--stdin"],
        input=forged + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cases.append((swapped, "does not verify"))

    for commit, reason in cases:
        fleet_repo.git("update-ref", "refs/heads/main", commit)
        result = dev.agent().once()
        assert result.outcome in ("failed", "rolled_back"), (commit, result)
        assert commit in result.message and reason in result.message, result.message
        assert dev.running() == f"v1 {v1}"
        entry = _history(dev)[-1]
        assert entry["to_commit"] == commit and entry["result"] == "failed"
        assert reason in entry["reason"]


def test_a_revoked_key_signs_nothing_more(device: Any, fleet_repo: FleetRepo, keys: Keys) -> None:
    alice, bob = keys.make("alice"), keys.make("bob")
    allowed = keys.allowed(alice=alice, bob=bob)
    revoked = keys.root / "revoked_keys"
    revoked.write_text("")
    sign_with(fleet_repo, bob)
    v1 = fleet_repo.commit(script_role("v1"), "v1 by bob")
    dev = _device(device, allowed, revoked)
    assert dev.agent().once().commit == v1
    # Bob's laptop is stolen: his key is revoked on the devices.
    revoked.write_text(bob.with_suffix(".pub").read_text())
    v2 = fleet_repo.commit(script_role("v2"), "v2 by bob's stolen key")
    result = dev.agent().once()
    assert result.outcome == "failed" and v2 in result.message
    assert "does not verify" in result.message
    assert dev.running() == f"v1 {v1}"
    sign_with(fleet_repo, alice)
    v3 = fleet_repo.commit(script_role("v3"), "v3 by alice")
    assert dev.agent().once().commit == v3


def test_a_manifest_that_is_not_the_signed_tree_is_refused(
    fleet_repo: FleetRepo, keys: Keys, tmp_path: Path
) -> None:
    """What a lying server could do in managed mode: serve the real signed
    commit's objects with another commit's files."""
    from fleetcore.plugin import CheckContext, DeviceInfo
    from fleetcore.plugin.types import SourceSettings
    from fleetcore_checks.signature import SignatureOptions, check_proof
    from fleetcore_git.git import GitSource

    alice = keys.make("alice")
    allowed = keys.allowed(alice=alice)
    sign_with(fleet_repo, alice)
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    source = GitSource(
        SourceSettings(repo=str(fleet_repo.path), branch="main", cache_dir=tmp_path / "cache")
    )
    proof = source.proof(v2, "web")
    options = SignatureOptions(allowed_signers=allowed)

    def context(manifest_of: str) -> CheckContext:
        fetched = source.fetch(manifest_of, "web", _empty(tmp_path / manifest_of))
        return CheckContext(
            kind="verify",
            device=DeviceInfo(device_id="pi-1", role="web", segment="general"),
            release_dir=tmp_path,
            commit=v2,
            manifest=fetched.manifest,
            options=options,
            log=__import__("logging").getLogger("test"),
            proof=proof,
        )

    assert check_proof(context(v2), options, proof) == []
    [reason] = check_proof(context(v1), options, proof)
    assert (
        reason
        == f"the release's files are not the tree of signed commit {v2} (roles/web was swapped)"
    )


def _empty(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def _managed_signed_device(
    tmp_path: Path, fleet_repo: FleetRepo, device_id: str, allowed: Path,
    revoked: Path | None = None,
) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """A control server and a managed device that verifies signatures
    against ``allowed`` (and ``revoked``)."""
    from tests.test_managed import ControlServer, ManagedDevice

    extra = f'[verify.signature]\nallowed_signers = "{allowed}"\n'
    if revoked is not None:
        extra += f'revoked_keys = "{revoked}"\n'
    server = ControlServer(tmp_path, fleet_repo)
    server.start()
    try:
        yield server, ManagedDevice(tmp_path, server, device_id, "general", extra=extra)
    finally:
        server.stop()


def test_a_managed_device_checks_signatures_without_git(
    tmp_path: Path, fleet_repo: FleetRepo, keys: Keys
) -> None:
    """In managed mode the server passes the commit's objects along; the
    device checks every hash and the signature itself."""
    from tests.test_managed import everyone

    alice, mallory = keys.make("alice"), keys.make("mallory")
    allowed = keys.allowed(alice=alice)
    sign_with(fleet_repo, alice)
    v1 = fleet_repo.commit(script_role("v1"), "v1 signed")
    with _managed_signed_device(tmp_path, fleet_repo, "pi-sig", allowed) as (server, device):
        everyone(server, v1)
        assert device.once() == 0 and device.running() == v1
        sign_with(fleet_repo, None)
        v2 = fleet_repo.commit(script_role("v2"), "v2 unsigned")
        server.api("POST", "/v1/hooks/git")
        everyone(server, v2)
        assert device.once() == 1
        assert device.running() == v1
        history = server.api("GET", "/v1/devices/pi-sig").json()["history"]
        assert any(
            h["to_commit"] == v2 and f"commit {v2} is not signed" in h["reason"] for h in history
        ), history
        # Signed, by a key the device does not allow.
        sign_with(fleet_repo, mallory)
        v3 = fleet_repo.commit(script_role("v3"), "v3 by mallory")
        server.api("POST", "/v1/hooks/git")
        everyone(server, v3)
        assert device.once() == 1
        assert device.running() == v1
        history = server.api("GET", "/v1/devices/pi-sig").json()["history"]
        assert any(h["to_commit"] == v3 and "not in" in h["reason"] for h in history), history


def _refused_in_managed_mode(
    server: Any, device: Any, commit: str, reason: str, running: str
) -> None:
    """One cycle of ``device`` refuses ``commit`` for ``reason``, naming it;
    the device keeps running ``running``, and both its own history and the
    server's record the refusal."""
    cycle = subprocess.run(
        [sys.executable, "-m", "fleetcore", "agent", "once", "--config", str(device.config),
         "--json"],
        capture_output=True, text=True, env=device.env, timeout=300,
    )  # fmt: skip
    assert cycle.returncode == 1, cycle.stdout + cycle.stderr
    result = json.loads(cycle.stdout)
    assert commit in result["message"] and reason in result["message"], result
    assert device.running() == running
    lines = (device.root / "state" / "history.jsonl").read_text().splitlines()
    entry = json.loads(lines[-1])
    assert (entry["to_commit"], entry["result"]) == (commit, "failed"), entry
    assert commit in entry["reason"] and reason in entry["reason"], entry
    history = server.api("GET", f"/v1/devices/{device.device_id}").json()["history"]
    assert any(h["to_commit"] == commit and reason in h["reason"] for h in history), history


def test_a_managed_device_refuses_a_revoked_key(
    tmp_path: Path, fleet_repo: FleetRepo, keys: Keys
) -> None:
    from tests.test_managed import everyone

    alice, bob = keys.make("alice"), keys.make("bob")
    allowed = keys.allowed(alice=alice, bob=bob)
    revoked = keys.root / "revoked_keys"
    revoked.write_text("")
    sign_with(fleet_repo, bob)
    v1 = fleet_repo.commit(script_role("v1"), "v1 by bob")
    with _managed_signed_device(tmp_path, fleet_repo, "pi-rev", allowed, revoked) as (
        server,
        device,
    ):
        everyone(server, v1)
        assert device.once() == 0 and device.running() == v1
        # Bob's laptop is stolen: his key is revoked on the devices, and the
        # thief pushes a commit his key signed.
        revoked.write_text(bob.with_suffix(".pub").read_text())
        v2 = fleet_repo.commit(script_role("v2"), "v2 by bob's stolen key")
        fleet_repo.git("-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", v2)
        server.api("POST", "/v1/hooks/git")
        everyone(server, v2)
        _refused_in_managed_mode(
            server,
            device,
            v2,
            f"commit {v2}: the signature by bob@example.com does not verify",
            running=v1,
        )
        # Alice, not revoked, still releases.
        sign_with(fleet_repo, alice)
        v3 = fleet_repo.commit(script_role("v3"), "v3 by alice")
        server.api("POST", "/v1/hooks/git")
        everyone(server, v3)
        assert device.once() == 0 and device.running() == v3


class HostileMirror:
    """A real HTTP server in front of the real control server that stands in
    for a hostile mirror (or a compromised server): it passes everything
    through, including the signed commit's objects (``/v1/proofs``), but
    answers the role archive and manifest of ``signed`` with those of
    ``other`` (the manifest relabelled with the signed commit's id), so the
    files it delivers are not the tree the signature covers. The other
    content comes from the real server only because a mirror needs some way
    to build an archive; an attacker would build it themselves."""

    def __init__(self, upstream: str, signed: str, other: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.forward(self)

            def do_POST(self) -> None:
                mirror.forward(self)

            def log_message(self, *args: object) -> None:
                pass

        self.upstream, self.signed, self.other = upstream, signed, other
        self.swapped: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def forward(self, handler: Any) -> None:
        path = handler.path
        swap = path.startswith(("/v1/archives/", "/v1/manifests/")) and self.signed in path
        if swap:
            self.swapped.append(path)
            path = path.replace(self.signed, self.other)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        skip = {"host", "content-length", "connection", "accept-encoding"}
        answer = requests.request(
            handler.command,
            self.upstream + path,
            data=body or None,
            headers={k: v for k, v in handler.headers.items() if k.lower() not in skip},
            timeout=60,
        )
        content = answer.content
        if swap and path.startswith("/v1/manifests/"):
            manifest = answer.json()
            manifest["commit"] = self.signed
            content = json.dumps(manifest).encode()
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                   "content-encoding", "etag"):  # fmt: skip
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_managed_device_refuses_a_signed_commit_whose_tree_was_swapped(
    tmp_path: Path, fleet_repo: FleetRepo, keys: Keys
) -> None:
    from types import SimpleNamespace

    from tests.test_managed import ControlServer, ManagedDevice, everyone

    alice = keys.make("alice")
    allowed = keys.allowed(alice=alice)
    sign_with(fleet_repo, alice)
    v1 = fleet_repo.commit(script_role("v1"), "v1 signed")
    # What the attacker wants devices to run: not signed by anyone allowed.
    sign_with(fleet_repo, None)
    evil = fleet_repo.commit(script_role("evil"), "evil", branch="attacker")
    fleet_repo.checkout("main")
    sign_with(fleet_repo, alice)
    v2 = fleet_repo.commit(script_role("v2"), "v2 signed")
    server = ControlServer(tmp_path, fleet_repo)
    server.start()
    mirror = HostileMirror(server.url, signed=v2, other=evil)
    try:
        device = ManagedDevice(
            tmp_path,
            SimpleNamespace(url=mirror.url, enrollment=server.enrollment),  # type: ignore[arg-type]
            "pi-swap",
            "general",
            extra=f'[verify.signature]\nallowed_signers = "{allowed}"\n',
        )
        everyone(server, v1)
        assert device.once() == 0 and device.running() == v1
        everyone(server, v2)
        _refused_in_managed_mode(
            server,
            device,
            v2,
            f"the release's files are not the tree of signed commit {v2} (roles/web was swapped)",
            running=v1,
        )
        assert mirror.swapped, "the hostile mirror never answered for the signed commit"
        assert device.out.read_text().split()[0] == "v1"  # the evil script never ran
    finally:
        mirror.stop()
        server.stop()


def test_bundles_signed_by_an_allowed_key_are_applied(
    device: Any, fleet_repo: FleetRepo, keys: Keys, tmp_path: Path
) -> None:
    import io
    import sys
    import tarfile

    def fleetcore(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleetcore", *args], capture_output=True, text=True, timeout=120
        )

    alice, mallory = keys.make("alice"), keys.make("mallory")
    allowed = keys.allowed(alice=alice)
    v1 = fleet_repo.commit(script_role("v1"), "v1")

    def bundle(name: str, *sign: str) -> Path:
        out = tmp_path / f"{name}.bundle"
        made = fleetcore("bundle", "create", "--repo", str(fleet_repo.path), "--commit", v1,
                         "--role", "web", "-o", str(out), "--json", *sign)  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["signed"] is bool(sign)
        return out

    # An air-gapped device that requires signatures.
    dev = device(
        repo="git://127.0.0.1:9/none",
        extra=f'[verify.signature]\nallowed_signers = "{allowed}"\n',
    )

    def apply(path: Path) -> subprocess.CompletedProcess[str]:
        return fleetcore("agent", "apply", "--bundle", str(path), "--config", str(dev.config_path))

    for path, reason in (
        (bundle("unsigned"), "is not signed"),
        (bundle("mallory", "--sign", str(mallory)), "not in"),
    ):
        refused = apply(path)
        assert refused.returncode == 1, refused.stdout
        assert f"the bundle of commit {v1}" in refused.stdout and reason in refused.stdout
        assert dev.running() is None
        assert reason in _history(dev)[-1]["reason"]

    # Signed by alice, but a file changed afterwards (the signature still
    # covers the manifest): refused by the manifest check.
    good = bundle("alice", "--sign", str(alice))
    tampered = tmp_path / "tampered.bundle"
    with tarfile.open(good) as src, tarfile.open(tampered, "w:gz") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("activate.sh"):
                data = b"#!/bin/sh\necho evil\n"
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    refused = apply(tampered)
    assert refused.returncode == 1 and "activate.sh" in refused.stdout
    assert dev.running() is None

    applied = apply(good)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert dev.running() == f"v1 {v1}"
