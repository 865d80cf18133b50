"""``fleetcore secrets`` as a real process, checked against the reference age CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleetcore_age.testing import age_decrypt, age_encrypt, age_keygen, ssh_keygen

SECRET = b"password=cli-secret-4f1a9\n"


def fleetcore(*args: str, stdin: bytes | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "fleetcore", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fleet repo with two web devices (age and SSH keys) and an operator."""
    path = tmp_path / "fleet"
    keys = tmp_path / "private"
    keys.mkdir()
    (path / "keys/web").mkdir(parents=True)
    (path / "keys/operators").mkdir(parents=True)
    (path / "roles/web").mkdir(parents=True)
    (path / "keys/web/pi-001.pub").write_text(age_keygen(keys / "pi-001.age") + "\n")
    (path / "keys/web/pi-002.pub").write_text("# ssh key\n" + ssh_keygen(keys / "pi-002") + "\n")
    (path / "keys/operators/alice.pub").write_text(age_keygen(keys / "alice.age") + "\n")
    return path


def private(repo: Path, name: str) -> Path:
    return repo.parent / "private" / name


def test_keygen_writes_a_private_identity_and_prints_its_recipient(tmp_path: Path) -> None:
    out = tmp_path / "etc/fleetcore/identity.age"
    proc = fleetcore("secrets", "keygen", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["identity"] == str(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # The reference age-keygen derives the same recipient from the file.
    derived = subprocess.run(["age-keygen", "-y", str(out)], capture_output=True, text=True)
    assert derived.stdout.strip() == data["recipient"]
    assert data["recipient"].startswith("age1")
    # The identity works with the reference age CLI.
    ciphertext = age_encrypt(SECRET, [data["recipient"]])
    assert age_decrypt(ciphertext, out).stdout == SECRET

    before = out.read_bytes()
    again = fleetcore("secrets", "keygen", "--out", str(out))
    assert again.returncode == 1
    assert b"already exists" in again.stderr
    assert out.read_bytes() == before
    plain = fleetcore("secrets", "keygen", "--out", str(tmp_path / "second.age"))
    assert plain.returncode == 0
    assert plain.stdout.decode().strip().startswith("age1")


def test_encrypt_to_the_role_devices_and_operators(repo: Path, tmp_path: Path) -> None:
    plaintext = tmp_path / "config" / "db.conf"
    plaintext.parent.mkdir()
    plaintext.write_bytes(SECRET)
    proc = fleetcore(
        "secrets",
        "encrypt",
        "--repo",
        str(repo),
        "--role",
        "web",
        "config/db.conf",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["file"] == "roles/web/config/db.conf.age"
    assert {(r["kind"], r["name"]) for r in data["recipients"]} == {
        ("device", "pi-001"),
        ("device", "pi-002"),
        ("operator", "alice"),
    }
    ciphertext = (repo / data["file"]).read_bytes()
    # Every reader decrypts with the reference age CLI, an outsider cannot.
    for name in ("pi-001.age", "pi-002", "alice.age"):
        result = age_decrypt(ciphertext, private(repo, name))
        assert (result.returncode, result.stdout) == (0, SECRET), name
    outsider = tmp_path / "outsider.age"
    age_keygen(outsider)
    assert age_decrypt(ciphertext, outsider).returncode != 0
    # The plaintext is nowhere in the repo.
    for path in repo.rglob("*"):
        if path.is_file():
            assert b"cli-secret" not in path.read_bytes(), path


def test_encrypt_from_stdin_and_refusals(repo: Path, tmp_path: Path) -> None:
    proc = fleetcore(
        "secrets",
        "encrypt",
        "--repo",
        str(repo),
        "--role",
        "web",
        "--as",
        ".env",
        "-",
        stdin=b"API_TOKEN=from-stdin\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("roles/web/.env.age: devices pi-001, pi-002")
    result = age_decrypt((repo / "roles/web/.env.age").read_bytes(), private(repo, "pi-001.age"))
    assert result.stdout == b"API_TOKEN=from-stdin\n"

    inside = repo / "roles/web/db.conf"
    inside.write_bytes(SECRET)
    proc = fleetcore("secrets", "encrypt", "--repo", str(repo), "--role", "web", str(inside))
    assert proc.returncode == 2
    assert b"inside the fleet repo" in proc.stderr
    assert not (repo / "roles/web/db.conf.age").exists()
    inside.unlink()

    outside = tmp_path / "x.conf"
    outside.write_bytes(SECRET)
    proc = fleetcore("secrets", "encrypt", "--repo", str(repo), "--role", "db", str(outside))
    assert proc.returncode == 1
    assert b"no device keys for role 'db': add keys/db/<device_id>.pub" in proc.stderr
    (repo / "keys/db").mkdir()
    (repo / "keys/db/pi-9.pub").write_text("age1notarecipient\n")
    proc = fleetcore("secrets", "encrypt", "--repo", str(repo), "--role", "db", str(outside))
    assert proc.returncode == 1
    assert b"keys/db/pi-9.pub: not a valid recipient" in proc.stderr
    proc = fleetcore(
        "secrets", "encrypt", "--repo", str(repo), "--role", "web", "--as", "../x", str(outside)
    )
    assert proc.returncode == 1
    assert b"must be a relative path inside it" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


def test_rekey_drops_a_removed_device(repo: Path, tmp_path: Path) -> None:
    source = tmp_path / "db.conf"
    source.write_bytes(SECRET)
    assert (
        fleetcore(
            "secrets", "encrypt", "--repo", str(repo), "--role", "web", str(source)
        ).returncode
        == 0
    )
    old = (repo / "roles/web/db.conf.age").read_bytes()
    assert age_decrypt(old, private(repo, "pi-002")).stdout == SECRET
    (repo / "keys/web/pi-002.pub").unlink()

    # A device identity cannot rekey: it is refused, nothing changes.
    proc = fleetcore(
        "secrets", "rekey", "--repo", str(repo), "--identity", str(tmp_path / "nope.age")
    )
    assert proc.returncode == 1 and b"does not exist" in proc.stderr
    proc = fleetcore(
        "secrets",
        "rekey",
        "--repo",
        str(repo),
        "--identity",
        str(private(repo, "alice.age")),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)["files"]
    assert entry["file"] == "roles/web/db.conf.age"
    assert {r["name"] for r in entry["recipients"]} == {"pi-001", "alice"}
    new = (repo / "roles/web/db.conf.age").read_bytes()
    assert age_decrypt(new, private(repo, "pi-001.age")).stdout == SECRET
    removed = age_decrypt(new, private(repo, "pi-002"))
    assert removed.returncode != 0 and b"no identity matched" in removed.stderr


def test_rekey_refuses_what_the_operator_cannot_read(repo: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.age"
    (repo / "roles/web/a.age").write_bytes(age_encrypt(SECRET, [age_keygen(stranger)]))
    proc = fleetcore(
        "secrets",
        "rekey",
        "--repo",
        str(repo),
        "--role",
        "web",
        "--identity",
        str(private(repo, "alice.age")),
    )
    assert proc.returncode == 1
    assert b"roles/web/a.age: not encrypted to this device's key" in proc.stderr


def test_secrets_commands_say_what_to_install_without_the_age_plugin(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['fleetcore_age'] = None\n"
        "sys.argv = ['fleetcore', 'secrets', 'keygen', '--out', sys.argv[1]]\n"
        "from fleetcore.cli.main import main; main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "id.age")],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    # The plugin is installed but cannot be imported: the command is missing,
    # and the message says which package adds it and why it is not there.
    assert proc.returncode == 2
    assert (
        "No such command 'secrets': it is added by the plugin package fleetcore-age, "
        "which is installed but failed"
    ) in proc.stderr
    assert not (tmp_path / "id.age").exists()


def test_the_plugin_lists_its_command() -> None:
    proc = fleetcore("plugins")
    assert proc.returncode == 0, proc.stderr
    assert b"command: secrets" in proc.stdout
    helped = fleetcore("--help")
    assert b"secrets  Device keys and age-encrypted secrets" in helped.stdout


def test_pyrage_output_decrypts_with_age_and_the_other_way(tmp_path: Path) -> None:
    from fleetcore_age import keys

    x_identity = tmp_path / "x.age"
    x_recipient = age_keygen(x_identity)
    ssh_public = ssh_keygen(tmp_path / "id_ed25519")
    recipients = [keys.parse_recipient(r, "test") for r in (x_recipient, ssh_public)]
    ciphertext = keys.encrypt(SECRET, recipients)
    assert age_decrypt(ciphertext, x_identity).stdout == SECRET
    assert age_decrypt(ciphertext, tmp_path / "id_ed25519").stdout == SECRET
    for armor in (False, True):
        from_age = age_encrypt(SECRET, [x_recipient, ssh_public], armor=armor)
        for identity in (x_identity, tmp_path / "id_ed25519"):
            got = keys.decrypt(from_age, keys.load_identities(identity), "f.age")
            assert got == SECRET
