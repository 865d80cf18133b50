"""``fleetcore server``: run the control server and issue its tokens."""

from __future__ import annotations

from pathlib import Path

import click

from fleetcore.cli.app import App
from fleetcore.model import SEGMENTS
from fleetcore.server.pacing import DEFAULT_WAKE_RATE

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    envvar="FLEETCORE_SERVER_DATA",
    help="Folder for the database (SQLite), the repo mirror and archives "
    "[env FLEETCORE_SERVER_DATA].",
)
DB = click.option(
    "--db",
    "db_url",
    envvar="FLEETCORE_SERVER_DB",
    help="Database URL, e.g. postgresql://user@host/fleet [env FLEETCORE_SERVER_DB; "
    "default: SQLite in the data folder].",
)


@click.group()
def server() -> None:
    """The control server: rollouts, policy and status for managed devices."""


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--listen")
    return host.strip("[]"), int(port)


@server.command()
@DATA_DIR
@click.option(
    "--repo",
    required=True,
    envvar="FLEETCORE_SERVER_REPO",
    help="The fleet repo: a path or any URL git fetches [env FLEETCORE_SERVER_REPO].",
)
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on."
)
@DB
@click.option(
    "--offline-after",
    default="3m",
    show_default=True,
    help="Devices silent this long are marked offline.",
)
@click.option(
    "--fetch-interval",
    default="1m",
    show_default=True,
    help="How often the repo mirror fetches (POST /v1/hooks/git fetches at once).",
)
@click.option(
    "--events",
    "events",
    multiple=True,
    envvar="FLEETCORE_SERVER_EVENTS",
    metavar="URL",
    help="Also send device events over this event channel, e.g. mqtt://broker:1883 "
    "(repeatable; an installed channel's URL or name; SSE is always served) "
    "[env FLEETCORE_SERVER_EVENTS, space-separated].",
)
@click.option(
    "--max-streams",
    type=click.IntRange(min=0),
    default=0,
    help="Hold at most this many device event streams; devices past it are told "
    "to poll (503) [default 0: what the file-descriptor limit allows, less 1,024].",
)
@click.option(
    "--wake-rate",
    type=click.IntRange(min=0),
    default=DEFAULT_WAKE_RATE,
    show_default=True,
    help="Tell at most this many devices a second that their desired state moved; "
    "a promotion moving more tells them in waves (0: all at once).",
)
@click.option(
    "--alerts",
    "alerts",
    multiple=True,
    envvar="FLEETCORE_SERVER_ALERTS",
    metavar="URL",
    help="Send alerts (incidents, devices in safe mode or offline, halted rollouts) "
    "to this alert channel: https://HOST/PATH posts JSON (webhook), "
    "alertmanager://HOST:9093 (or alertmanager+https://) feeds Alertmanager "
    "(repeatable; an installed channel's URL or name) "
    "[env FLEETCORE_SERVER_ALERTS, space-separated].",
)
@click.option(
    "--initial-release",
    metavar="BRANCH_OR_COMMIT",
    envvar="FLEETCORE_SERVER_INITIAL_RELEASE",
    help="Roles with no finished rollout take this release at once (a new fleet "
    "installs without a first rollout); roles that have one are left alone "
    "[env FLEETCORE_SERVER_INITIAL_RELEASE].",
)
@click.option(
    "--device-metrics/--no-device-metrics",
    default=True,
    show_default=True,
    help="Serve each device's CPU, memory, disk, network and container series on "
    "/metrics (at most 68 series a device); off for very large fleets.",
)
@click.option(
    "--page-refresh",
    default="10s",
    show_default=True,
    help="How often an open dashboard page refreshes itself (each refresh of the "
    "overview is a pass over the fleet: longer for very large fleets).",
)
@click.pass_obj
def run(
    app: App,
    data_dir: Path,
    repo: str,
    listen: str,
    db_url: str | None,
    offline_after: str,
    fetch_interval: str,
    events: tuple[str, ...],
    max_streams: int,
    wake_rate: int,
    alerts: tuple[str, ...],
    initial_release: str | None,
    device_metrics: bool,
    page_refresh: str,
) -> None:
    """Serve the device API, the operator API, /metrics and the dashboard.

    Devices of a role install nothing until a rollout has finished for it:
    start one with `fleetcore fleet rollout start`, or give --initial-release.
    """
    from fleetcore.alerts.select import server_alert_channels
    from fleetcore.channels.select import server_channels
    from fleetcore.errors import ConfigError
    from fleetcore.server.app import ServerConfig, serve

    app.setup_logging()
    host, port = _listen(listen)
    offline = _seconds(offline_after, "--offline-after")
    fetch = _seconds(fetch_interval, "--fetch-interval")
    refresh = _seconds(page_refresh, "--page-refresh")
    if refresh < 1:
        raise click.BadParameter("must be at least 1s", param_hint="--page-refresh")
    pm = app.plugins()
    try:
        # Checked before anything starts: a typo must not leave a server
        # running without the events the operator asked for.
        server_channels(pm, events)
    except ConfigError as exc:
        raise click.BadParameter("; ".join(exc.problems), param_hint="--events") from None
    try:
        server_alert_channels(pm, alerts)
    except ConfigError as exc:
        raise click.BadParameter("; ".join(exc.problems), param_hint="--alerts") from None
    config = ServerConfig(
        data_dir=data_dir,
        repo=repo,
        db_url=db_url,
        offline_after=offline,
        fetch_interval=fetch,
        events=events,
        max_streams=max_streams,
        wake_rate=wake_rate,
        alerts=alerts,
        initial_release=initial_release,
        device_metrics=device_metrics,
        page_refresh=refresh,
    )
    serve(config, host, port, pm)


def _seconds(value: str, option: str) -> float:
    from fleetcore.config.units import Duration

    try:
        return Duration.parse(value).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@server.group()
def token() -> None:
    """Tokens, straight in the database: for the first admin token, or when
    every admin token is lost (no running server needed)."""


@token.command("create")
@DATA_DIR
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    required=True,
    help="viewer reads; operator runs rollouts; admin pins, locks, overrides.",
)
@click.option("--name", default="", help="Who the token is for (shown in the audit log).")
@DB
def token_create(data_dir: Path, role: str, name: str, db_url: str | None) -> None:
    """Print a new operator token (only its hash is stored)."""
    from fleetcore.server.store import Store, database_url

    store = Store(database_url(data_dir, db_url))
    click.echo(store.create_token("operator", role, name=name or f"{role}-token"))
    store.close()


@token.command("list")
@DATA_DIR
@DB
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(data_dir: Path, db_url: str | None, as_json: bool) -> None:
    """Every operator and enrollment token (never the tokens themselves)."""
    from fleetcore.cli.fleet.access import token_line
    from fleetcore.server.store import Store, database_url

    store = Store(database_url(data_dir, db_url))
    items = store.list_tokens()
    store.close()
    if as_json:
        App.print_json(items)
        return
    for item in items:
        click.echo(token_line(item))


@token.command("revoke")
@click.argument("token_id", type=int)
@DATA_DIR
@DB
@click.option("--reason", required=True, help="Why (for the audit log).")
def token_revoke(token_id: int, data_dir: Path, db_url: str | None, reason: str) -> None:
    """Revoke token TOKEN_ID: running servers on this database refuse it at once."""
    from fleetcore.server.bodies import ApiError
    from fleetcore.server.store import Store, database_url

    store = Store(database_url(data_dir, db_url))
    try:
        item = store.revoke_token(token_id, actor="server-cli", reason=reason)
    except ApiError as exc:
        # As `fleetcore fleet`: an unknown id is bad input, a revoked one refused.
        App.abort(exc.message, 2 if exc.status == 404 else 1)
    finally:
        store.close()
    click.echo(f"token {item['id']} ({item['name']}) revoked")


@server.command("enrollment-token")
@DATA_DIR
@click.option("--ttl", default="7d", show_default=True, help="How long devices may enroll with it.")
@click.option("--role", "device_role", help="Only devices of this role may enroll with it.")
@click.option(
    "--segment",
    type=click.Choice(SEGMENTS),
    help="Only devices in this rollout segment may enroll with it.",
)
@click.option("--max-uses", type=click.IntRange(min=1), help="At most this many enrollments.")
@click.option(
    "--require-approval",
    is_flag=True,
    help="Devices stay pending (no desired state, no secrets) until an admin accepts them.",
)
@click.option("--name", default="enrollment", show_default=True, help="Shown in lists.")
@DB
def enrollment_token(
    data_dir: Path,
    ttl: str,
    device_role: str | None,
    segment: str | None,
    max_uses: int | None,
    require_approval: bool,
    name: str,
    db_url: str | None,
) -> None:
    """Print a token devices enroll with (only its hash is stored). It admits
    new device ids only: an enrolled id needs its current credential or an
    admin's `fleetcore fleet device allow-reenroll`."""
    from fleetcore.config.units import Duration
    from fleetcore.server.store import EnrollmentScope, Store, database_url

    try:
        seconds = Duration.parse(ttl).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    scope = EnrollmentScope(segment=segment, max_uses=max_uses, require_approval=require_approval)
    store = Store(database_url(data_dir, db_url))
    click.echo(store.create_token("enrollment", device_role, name=name, ttl=seconds, scope=scope))
    store.close()
