"""``fleetcore agent``: the device side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fleetcore.cli.app import App

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default="/etc/fleetcore/agent.toml",
    show_default=True,
    envvar="FLEETCORE_CONFIG",
    help="The agent's configuration [env FLEETCORE_CONFIG].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group()
def agent() -> None:
    """Run and inspect the agent of this device."""


def _agent(app: App, config_path: Path, progress: bool = False) -> Any:
    """The agent; with ``progress``, long steps draw meters when stderr is a
    terminal (never in services, pipes or logs)."""
    from fleetcore.agent.agent import Agent

    config = app.agent_config(config_path)
    the_agent = Agent(config, pm=app.plugins(config.plugins.disable))
    if progress:
        from fleetcore.cli.progress import progress_factory

        factory = progress_factory()
        the_agent.ctx.progress = factory
        if the_agent.ctx.client is not None:
            the_agent.ctx.client.progress = factory
    return the_agent


@agent.command()
@config_option
@json_option
@click.option(
    "--no-handoff",
    is_flag=True,
    help="Run the cycle in this process even when the agent service runs.",
)
@click.pass_obj
def once(app: App, config_path: Path, as_json: bool, no_handoff: bool) -> None:
    """Run one update cycle and exit.

    Exit 0 when the device runs its desired release and it is healthy; 1 when
    an update failed or was rolled back; 3 when the update was deferred (lock
    held, throttled, maintenance window, newer commit pending); 4 in safe
    mode; 5 when the fleet repo is unreachable.

    When `fleetcore agent run` runs as a service, the cycle is handed off to
    it: the service runs it at once and this command reports its result.
    """
    if not no_handoff:
        # Before the agent and its libraries are imported: the standard library only.
        from fleetcore.agent.handoff import ask

        reply = ask(config_path)
        if reply is not None:
            _report_reply(app, reply, as_json)
    result = _agent(app, config_path, progress=not as_json).once()
    _report(app, result, as_json)


@agent.command()
@config_option
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    envvar="FLEETCORE_AGENT_METRICS",
    help="Also serve this device's metrics on http://HOST:PORT/metrics for a Prometheus "
    "on the same network (off by default) [env FLEETCORE_AGENT_METRICS].",
)
@click.pass_obj
def run(app: App, config_path: Path, metrics_listen: str | None) -> None:
    """Run update cycles forever, every update_interval.

    SIGHUP runs a cycle at once; SIGTERM finishes the current cycle and exits.
    """
    from fleetcore.agent.loop import run_forever

    the_agent = _agent(app, config_path)
    exporter = None
    if metrics_listen:
        from fleetcore.agent.exporter import MetricsExporter

        host, _, port = metrics_listen.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(
                f"expected HOST:PORT, got {metrics_listen!r}", param_hint="--metrics-listen"
            )
        try:
            exporter = MetricsExporter(the_agent.ctx, host.strip("[]"), int(port)).start()
        except OSError as exc:
            app.abort(f"cannot serve metrics on {metrics_listen}: {exc}", 2)
    try:
        run_forever(the_agent)
    finally:
        if exporter is not None:
            exporter.stop()


@agent.command()
@config_option
@click.option(
    "--bundle",
    "bundle_path",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="An offline bundle made by `fleetcore bundle create`.",
)
@json_option
@click.pass_obj
def apply(app: App, config_path: Path, bundle_path: Path, as_json: bool) -> None:
    """Apply an offline bundle (air-gapped devices): verify, unpack, validate,
    activate and health-check it like any update."""
    from fleetcore.bundle import open_bundle, read_signed

    the_agent = _agent(app, config_path, progress=not as_json)
    fetched = open_bundle(bundle_path)
    result = the_agent.apply(fetched, signed=read_signed(bundle_path))
    _report(app, result, as_json)


@agent.command()
@config_option
@click.option("--deep", is_flag=True, help="Also compare file contents, the clock and DNS.")
@click.option("--fix", is_flag=True, help="Repair what drifted, then check again.")
@json_option
@click.pass_obj
def check(app: App, config_path: Path, deep: bool, fix: bool, as_json: bool) -> None:
    """Compare the device with its release: files, containers, folders, disk,
    clock, DNS.

    Exit 0 when nothing drifted, 6 when drift was found and every fix held,
    1 when drift is left (not fixed, or a fix did not hold: the device then
    enters safe mode), 3 when another agent holds the lock.
    """
    result = _agent(app, config_path).check(deep=deep, fix=fix)
    code = {"clean": 0, "fixed": 6, "left": 1}[result.verdict]
    if as_json:
        app.print_json({**result.to_json(), "exit_code": code})
    else:
        count = len(result.findings)
        fixes = "; ".join(
            f"{f.fix} {'held' if f.held else 'failed'}: {f.message}" for f in result.fixes
        )
        click.echo(f"{result.verdict}: {count} finding(s)" + (f" | {fixes}" if fixes else ""))
        for finding in result.findings:
            click.echo(f"  {'left ' if finding in result.left else 'fixed'}  {finding}")
    raise click.exceptions.Exit(code)


@agent.command()
@config_option
@json_option
@click.pass_obj
def status(app: App, config_path: Path, as_json: bool) -> None:
    """Show what the device runs and how it is doing."""
    from fleetcore.agent.report import status_report

    report = status_report(app.agent_config(config_path))
    if as_json:
        app.print_json(report)
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        shown = value
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        click.echo(f"{key:<{width}}  {'-' if shown in (None, '') else shown}")


@agent.command()
@config_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N entries.")
@click.pass_obj
def history(app: App, config_path: Path, as_json: bool, limit: int | None) -> None:
    """Show the device's update history, oldest first."""
    from fleetcore.agent.state import StateStore, history_json

    config = app.agent_config(config_path)
    entries = [history_json(e) for e in StateStore(config.state_dir).history()]
    if limit:
        entries = entries[-limit:]
    if as_json:
        app.print_json(entries)
        return
    for e in entries:
        frm = (e["from_commit"] or "-")[:12]
        to = (e["to_commit"] or "-")[:12]
        reason = f"  {e['reason']}" if e["reason"] else ""
        click.echo(
            f"{e['timestamp']}  {e['result']:<8} {frm} -> {to}  "
            f"{e['duration_seconds']:.1f}s{reason}"
        )


@agent.command()
@config_option
@click.pass_obj
def resume(app: App, config_path: Path) -> None:
    """Leave safe mode: let the agent attempt updates again."""
    state = _agent(app, config_path).resume()
    click.echo(f"mode: {state.mode}")


def _report(app: App, result: Any, as_json: bool) -> None:
    _report_reply(
        app,
        {
            "outcome": result.outcome,
            "message": result.message,
            "commit": result.commit,
            "pending_commit": result.pending_commit,
            "exit_code": result.exit_code,
        },
        as_json,
    )


def _report_reply(app: App, reply: dict[str, Any], as_json: bool) -> None:
    """Print a cycle's result (this process's or the service's) and exit with its code."""
    from fleetcore.agent.handoff import render

    text, to_stderr = render(reply, as_json)
    click.echo(text, err=to_stderr)
    raise click.exceptions.Exit(int(reply["exit_code"]))


@agent.command()
@config_option
@click.option(
    "--server",
    "server_url",
    envvar="FLEETCORE_SERVER",
    help="The control server's URL [env FLEETCORE_SERVER; default: [server] url].",
)
@click.option(
    "--enrollment-token",
    envvar="FLEETCORE_ENROLLMENT_TOKEN",
    help="A token from `fleetcore server enrollment-token` [env FLEETCORE_ENROLLMENT_TOKEN; "
    "required unless --rotate].",
)
@click.option(
    "--rotate",
    is_flag=True,
    help="Replace this device's credential, sending its current one (no enrollment token).",
)
@json_option
@click.pass_obj
def enroll(
    app: App,
    config_path: Path,
    server_url: str | None,
    enrollment_token: str | None,
    rotate: bool,
    as_json: bool,
) -> None:
    """Enroll this device with a control server: it gets its own credential,
    stored with mode 0600 (the server keeps only a hash), and the device
    becomes managed: `[server] url` is written into the config, or updated
    when --server names another server (comments and layout kept). When the
    file cannot be edited safely the command refuses before enrolling
    (exit 1) and prints the lines to add. An enrollment token
    admits a new device id only; an enrolled device rotates its credential
    with --rotate."""
    import socket

    import attrs

    from fleetcore.agent.managed import ServerClient, credential_path
    from fleetcore.config.agent import Server
    from fleetcore.config.edit import plan_server_url, write_config
    from fleetcore.errors import ConfigError

    config = app.agent_config(config_path)
    configured = config.server.url.rstrip("/") if config.server else None
    url = (server_url or configured or "").rstrip("/")
    if not url:
        raise ConfigError(str(config_path), ["give --server or [server] url"])
    # Planned before enrolling: a device enrolled but left in git-only mode
    # (or pointing at its old server) would never take this server's
    # rollouts, and nothing would say so. Written only once enrolled.
    new_config = plan_server_url(config_path, url) if url != configured else None
    if config.server is None:
        config = attrs.evolve(config, server=Server(url=url))
    elif url != configured:
        config = attrs.evolve(config, server=attrs.evolve(config.server, url=url))
    if rotate:
        ServerClient(config).rotate()
        path = credential_path(config)
        if as_json:
            app.print_json(
                {"device_id": config.device_id, "server": url, "credential_file": str(path)}
            )
        else:
            click.echo(f"rotated the credential of {config.device_id}; new one in {path}")
        return
    if not enrollment_token:
        raise click.UsageError("give --enrollment-token, or --rotate to replace the credential")
    ServerClient(config).enroll(enrollment_token, hostname=socket.gethostname())
    if new_config is not None:
        write_config(config_path, new_config)
    path = credential_path(config)
    if as_json:
        app.print_json(
            {
                "device_id": config.device_id,
                "server": url,
                "credential_file": str(path),
                "config_updated": new_config is not None,
                "mode": "managed",
            }
        )
    else:
        click.echo(f"enrolled {config.device_id} with {url}; credential in {path}")
        if new_config is not None:
            click.echo(f"{config_path}: [server] url = {url} written; the device is managed")
        if configured and url != configured:
            click.echo(f"(it was managed by {configured} before)")
