"""``fleetcore simulate``: a fleet of virtual devices against a real server.

Exit codes: 0 the run ended (duration reached or converged), 1 no device
could enroll, 2 bad options (the message names the option), 3 ``--until-
converged`` gave up at ``--duration`` without converging.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from fleetcore.cli.app import App

FORMS = {
    "--role": "NAME=SHARE,... (e.g. web=70%,camera=30%)",
    "--segment": "SEGMENT=SHARE,... (canary, early, general)",
}


def _duration(value: str, option: str) -> float:
    from fleetcore.config.units import Duration

    try:
        seconds = Duration.parse(value).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be more than 0, got {value!r}", param_hint=option)
    return float(seconds)


@click.command()
@click.option(
    "--server",
    envvar="FLEETCORE_SERVER",
    required=True,
    help="The control server's URL [env FLEETCORE_SERVER].",
)
@click.option(
    "--enrollment-token",
    envvar="FLEETCORE_ENROLLMENT_TOKEN",
    required=True,
    help="An enrollment token (`fleetcore server token create --kind enrollment`) "
    "[env FLEETCORE_ENROLLMENT_TOKEN].",
)
@click.option(
    "--devices",
    "count",
    type=click.IntRange(1, 1_000_000),
    required=True,
    help="How many virtual devices.",
)
@click.option(
    "--prefix",
    default="sim-",
    show_default=True,
    help="Device ids are PREFIX000001, PREFIX000002, ...",
)
@click.option(
    "--role",
    "roles",
    default="web=100%",
    show_default=True,
    help="Role shares, e.g. web=70%,camera=30%.",
)
@click.option(
    "--segment",
    "segments",
    default="canary=5%,early=15%,general=80%",
    show_default=True,
    help="Segment shares.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="A label and its value shares, e.g. hardware=pi4:70%,pi3:30% (repeatable); "
    "reported as the device's labels.",
)
@click.option(
    "--report-interval", default="60s", show_default=True, help="Time between status reports."
)
@click.option(
    "--poll-interval",
    default="60s",
    show_default=True,
    help="Time between desired-state polls (events wake devices in between).",
)
@click.option(
    "--events",
    default="sse",
    show_default=True,
    help="How devices are woken: sse, none, or an event channel URL (mqtt://HOST:PORT).",
)
@click.option(
    "--update-time", default="2s", show_default=True, help="How long applying a release takes."
)
@click.option(
    "--fail",
    "fail_rules",
    multiple=True,
    metavar="COMMIT:KEY=VALUE[:RATE]",
    help="Matching devices fail health on COMMIT (a prefix, or 'any') and roll back; "
    "KEY is role, segment or a label (* for every device); RATE a share (default "
    "100%). Repeatable.",
)
@click.option(
    "--offline",
    default="0",
    show_default=True,
    help="Share of devices that go silent during the run.",
)
@click.option("--flap", default="0", show_default=True, help="Share of devices that come and go.")
@click.option("--duration", default=None, help="How long to run [default: 10m].")
@click.option(
    "--until-converged",
    is_flag=True,
    help="Stop once every online device runs what it should (bounded by --duration).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Same options and seed, same fleet."
)
@click.option(
    "--connections",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Keep-alive connections shared by all devices for their requests.",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificate for an https:// server.",
)
@click.option(
    "--stats-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rewrite the summary so far to this file every 10 s (atomically), for "
    "a script or benchmark watching a long run.",
)
@click.option(
    "--credentials",
    "credentials_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep each device's credential in this file (mode 0600): a later run "
    "with the same file and server resumes the same devices instead of being "
    "refused for enrolling them again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_obj
def simulate(
    app: App,
    server: str,
    enrollment_token: str,
    count: int,
    prefix: str,
    roles: str,
    segments: str,
    labels: tuple[str, ...],
    report_interval: str,
    poll_interval: str,
    events: str,
    update_time: str,
    fail_rules: tuple[str, ...],
    offline: str,
    flap: str,
    duration: str | None,
    until_converged: bool,
    seed: int,
    connections: int,
    ca_file: str | None,
    stats_file: Path | None,
    credentials_file: Path | None,
    as_json: bool,
) -> None:
    """Simulate a fleet: many virtual devices speaking the real device protocol.

    Each device enrolls, polls its desired state (with ETags), reports
    status every --report-interval, sends its update history, wakes on
    server events, double-checks rollout eligibility with the same strategy
    plugin as a real agent, and applies a release by waiting --update-time.
    Devices, roles, segments, labels and failures are a pure function of the
    options and --seed; --credentials lets a later run resume the same
    devices. A progress line every 10 s on a terminal; Ctrl-C stops with
    the summary. Exit codes: 0 done, 1 nobody enrolled, 2 bad
    options, 3 not converged (with --until-converged).
    """
    from fleetcore.simulate.credentials import CredentialFile
    from fleetcore.simulate.plan import (
        SEGMENTS,
        OptionError,
        Plan,
        parse_fail,
        parse_fraction,
        parse_label,
        parse_shares,
    )
    from fleetcore.simulate.run import Simulation, render

    try:
        offline_share = parse_fraction(offline, "--offline")
        flap_share = parse_fraction(flap, "--flap")
        if offline_share + flap_share > 1:
            raise OptionError("--offline and --flap together exceed 100% of the fleet")
        label_shares = tuple(parse_label(text) for text in labels)
        if len({key for key, _ in label_shares}) != len(label_shares):
            raise OptionError("--label: the same label key is given twice")
        plan = Plan(
            devices=count,
            prefix=prefix,
            roles=parse_shares(roles, "--role"),
            segments=parse_shares(segments, "--segment", allowed=SEGMENTS),
            labels=label_shares,
            report_interval=_duration(report_interval, "--report-interval"),
            poll_interval=_duration(poll_interval, "--poll-interval"),
            update_time=_duration(update_time, "--update-time") if update_time != "0" else 0.0,
            fail=tuple(parse_fail(text) for text in fail_rules),
            offline=offline_share,
            flap=flap_share,
            duration=_duration(duration, "--duration") if duration else 600.0,
            until_converged=until_converged,
            seed=seed,
        )
        if stats_file is not None and not stats_file.parent.is_dir():
            raise OptionError(f"--stats-file: no folder {str(stats_file.parent)!r} to write it in")
        if not server.startswith(("http://", "https://")):
            raise OptionError(f"--server: expected an http:// or https:// URL, got {server!r}")
        credentials = None
        if credentials_file is not None:
            credentials = CredentialFile(credentials_file, server.rstrip("/"))
    except OptionError as exc:
        raise click.UsageError(str(exc)) from None

    app.setup_logging()
    simulation = Simulation(
        plan,
        server=server,
        enrollment_token=enrollment_token,
        events=events,
        pm=app.plugins(),
        connections=connections,
        ca_file=ca_file,
        stats_file=stats_file,
        credentials=credentials,
    )
    progress = None
    if sys.stderr.isatty() and not as_json:
        progress = lambda line: click.echo(line, err=True)  # noqa: E731
    summary = asyncio.run(simulation.run(progress))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render(summary)
    if summary["enrolled"] == 0:
        reasons = ", ".join(f"{why} ({n})" for why, n in summary["errors"].items()) or "stopped"
        click.echo(f"error: no device could enroll at {server}: {reasons}", err=True)
        sys.exit(1)
    if until_converged and not summary["converged"] and not summary["interrupted"]:
        sys.exit(3)
