"""Plugins selected by a role, through the whole pipeline."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from fleetcore.plugin import hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import SecretsProvider
from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.services import free_port


def with_tcp_check(marker: str, port: int) -> dict[str, str]:
    return script_role(
        marker,
        extra={
            "roles/web/role.toml": f'[health]\nsettle = "0s"\n[health.tcp-port]\nport = {port}\n'
            'timeout = "1s"\n'
        },
    )


def test_third_party_check_selected_by_role_config(device, fleet_repo: FleetRepo) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    try:
        v1 = fleet_repo.commit(with_tcp_check("v1", open_port), "v1 checks an open port")
        dev = device()
        assert dev.agent().once().commit == v1
        fleet_repo.commit(with_tcp_check("v2", free_port()), "v2 checks a closed port")
        result = dev.agent().once()
    finally:
        listener.close()
    assert (result.outcome, result.commit) == ("rolled_back", v1)
    assert "tcp-port" in result.message


SECRET = "s3cr3t-token-value"


class FileSecrets:
    """A secrets provider claiming roles that hold a `secrets.wanted` file."""

    @hookimpl
    def fleetcore_register_secrets_providers(self):
        def provide(ctx):
            target = ctx.release_dir / "secret.conf"
            target.write_text(f"token={SECRET}\n")
            target.chmod(0o600)
            return {"API_TOKEN": SECRET}

        yield SecretsProvider(
            name="test-file-secrets",
            summary="test",
            factory=lambda _options: type("P", (), {"provide": staticmethod(provide)})(),
            detect=lambda release_dir: (release_dir / "secrets.wanted").exists(),
        )


def test_secrets_reach_the_release_and_nothing_else(device, fleet_repo, caplog) -> None:
    role = script_role("v1", extra={"roles/web/secrets.wanted": ""})
    role["roles/web/activate.sh"] += 'test "$API_TOKEN" = "' + SECRET + '"\n'
    v1 = fleet_repo.commit(role, "v1 with a secret")
    dev = device()
    pm = PluginManager()
    pm.register(FileSecrets(), name="test-file-secrets")
    caplog.set_level("DEBUG")
    result = dev.agent(pm).once()
    assert (result.outcome, result.commit) == ("updated", v1)
    release = dev.state / "current"
    env_file = release / ".fleetcore.env"
    assert env_file.read_text() == f"API_TOKEN={SECRET}\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((release / "secret.conf").stat().st_mode) == 0o600
    # Not in logs, state, history or manifests.
    assert SECRET not in caplog.text
    for path in [
        dev.state / "state.json",
        dev.state / "history.jsonl",
        *(dev.state / "releases").glob("*.manifest.json"),
    ]:
        assert SECRET not in path.read_text(), path


def test_unknown_secrets_provider_named_by_a_role_is_refused(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    fleet_repo.commit(
        script_role(
            "v2",
            extra={
                "roles/web/role.toml": '[secrets]\nproviders = ["kms-nowhere"]\n'
                '[health]\nsettle = "0s"\n'
            },
        )
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "unknown secrets provider 'kms-nowhere' @ secrets.providers" in result.message


@pytest.mark.parametrize(
    "hook", ["fleetcore_register_drift_checks", "fleetcore_register_drift_fixes"]
)
def test_drift_hooks_register_named_records(hook: str) -> None:
    from fleetcore.plugin.types import Check, DriftFix

    def records():
        if hook.endswith("checks"):
            return [Check(name="stale-file", summary="", run=lambda ctx: [])]
        return [
            DriftFix(
                name="restore",
                summary="",
                fixes={"file-changed"},
                run=lambda ctx, findings: "restored",
            )
        ]

    plugin = type("P", (), {hook: staticmethod(hookimpl(records))})()
    pm = PluginManager(entry_points=False)
    pm.register(plugin, name="drifty")
    kind = "drift check" if hook.endswith("checks") else "drift fix"
    [info] = pm.plugins()
    assert info.provides == {kind: (records()[0].name,)}
    if kind == "drift fix":
        assert pm.registry(kind).get("restore", where="", source="").fixes == {"file-changed"}


def test_every_hook_is_documented_and_tested() -> None:
    """Every hook of the contract has a docstring, a section in the plugin
    guide, and a test that names it."""
    from fleetcore.plugin import hookspecs

    root = Path(__file__).parent.parent
    guide = (root / "docs/plugins.md").read_text()
    tests = "\n".join(
        p.read_text() for p in [*root.glob("tests/**/*.py"), *root.glob("plugins/*/tests/*.py")]
    )
    plugins = "\n".join(p.read_text() for p in root.glob("plugins/*/src/**/*.py"))
    hooks = [n for n in dir(hookspecs) if n.startswith("fleetcore_")]
    assert len(hooks) == 18
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"`{name}" in guide, f"{name} is not in docs/plugins.md"
        assert name in tests or name in plugins, f"nothing exercises {name}"


def test_a_script_that_prints_a_secret_leaks_nothing(device, fleet_repo, caplog) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    role = script_role(
        "v2", extra={"roles/web/secrets.wanted": ""}, validate='echo "token is $API_TOKEN"; exit 1'
    )
    fleet_repo.commit(role, "v2 prints its secret")
    pm = PluginManager()
    pm.register(FileSecrets(), name="test-file-secrets")
    result = dev.agent(pm).once()
    assert result.outcome == "failed"
    assert "token is ***" in result.message
    assert SECRET not in result.message and SECRET not in caplog.text
    assert SECRET not in (dev.state / "history.jsonl").read_text()
