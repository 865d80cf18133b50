"""The conformance kits must fail on plugins that break the contract, or the
plugin tests that use them would prove nothing. Each test runs a kit, as a
plugin author would, on a small plugin broken in one way."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.usefixtures("_quiet")


@pytest.fixture
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inner sessions must not see the outer one's options (coverage, -x).
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


def run_kit(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_kit=textwrap.dedent(source))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-rf")


# -- rollout strategies -----------------------------------------------------------------------

ROLLOUT = """
    import pytest
    from attrs import frozen
    from fleetcore.plugin.types import RolloutStrategy
    from fleetcore.policy import percentage_bucket
    from fleetcore.testing.conformance.rollout import RolloutStrategyKit

    @frozen(kw_only=True)
    class Options:
        percent: int = 0

    class Band:
        # Eligible in a band of buckets that moves as the percentage grows.
        def __init__(self, options):
            self.percent = options.percent

        def eligible(self, device, commit):
            bucket = percentage_bucket(device.device_id, commit)
            return self.percent - 10 <= bucket < self.percent BROKEN

    class TestBand(RolloutStrategyKit):
        @pytest.fixture
        def record(self):
            return RolloutStrategy(name="band", summary="A band", factory=Band,
                                   config_type=Options)

        @pytest.fixture
        def steps(self):
            return [{"percent": p} for p in (0, 10, 50, 100)]

        @pytest.fixture
        def nobody(self):
            return {"percent": 0}
"""


def test_rollout_kit_passes_a_good_strategy(pytester: pytest.Pytester) -> None:
    run_kit(pytester, ROLLOUT.replace("BROKEN", "or bucket < self.percent")).assert_outcomes(
        passed=3
    )


def test_rollout_kit_fails_a_strategy_that_is_not_monotone(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, ROLLOUT.replace("BROKEN", ""))
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*band: not monotone*"])


# -- fetchers ---------------------------------------------------------------------------------

FETCHER = """
    import io
    import subprocess
    import pytest
    from fleetcore.errors import FetchError
    from fleetcore.fetch.interface import Fetched
    from fleetcore.plugin.types import Fetcher
    from fleetcore.release import Manifest, unpack
    from fleetcore.testing.conformance.fetcher import FetcherKit

    class PlainGit:
        # Reads a local repository with git itself; measures its own archive
        # (which a real fetcher must never do: the manifest vouches for it).
        def __init__(self, settings, options):
            self.path = settings.repo.removeprefix("file://")

        def git(self, *args):
            proc = subprocess.run(["git", "-C", self.path, *args], capture_output=True)
            if proc.returncode:
                raise ERROR(proc.stderr.decode())
            return proc.stdout

        def head(self, branch):
            return self.git("rev-parse", f"refs/heads/{branch}").decode().strip()

        def read(self, commit, paths):
            self.git("cat-file", "-e", f"{commit}^{{commit}}")
            found = {}
            for path in paths:
                kind = subprocess.run(["git", "-C", self.path, "cat-file", "-t",
                                       f"{commit}:{path}"], capture_output=True).stdout
                found[path] = self.git("show", f"{commit}:{path}") if kind == b"blob\\n" else None
            return {p: d for p, d in found.items() if MISSING}

        def fetch(self, commit, role, workdir):
            archive = workdir / "role.tar"
            archive.write_bytes(self.git("archive", commit, f"roles/{role}"))
            measured = unpack(archive, workdir / "measure", prefix=f"roles/{role}",
                              max_bytes=1 << 30)
            return Fetched(archive=archive, prefix=f"roles/{role}",
                           manifest=Manifest.from_unpacked(commit, role, measured))

    class TestPlainGit(FetcherKit):
        @pytest.fixture
        def record(self):
            return Fetcher(name="plain", summary="Plain git", factory=PlainGit)
"""


def test_fetcher_kit_passes_a_good_fetcher(pytester: pytest.Pytester) -> None:
    good = FETCHER.replace("ERROR", "FetchError").replace("MISSING", "d is not None")
    run_kit(pytester, good).assert_outcomes(passed=8)


def test_fetcher_kit_fails_wrong_errors_and_missing_files(pytester: pytest.Pytester) -> None:
    broken = FETCHER.replace("ERROR", "RuntimeError").replace("MISSING", "True")
    result = run_kit(pytester, broken)
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines_random(
        [
            "*plain: head() of a branch that does not exist must raise FetchError, not Runtime*",
            "*plain: read(*) returned*'devices/missing.toml': None*",
            "*plain: read() of a commit that does not exist must raise FetchError*",
            "*plain: fetch() of a role that does not exist must raise FleetcoreError*",
        ]
    )


# -- activators -----------------------------------------------------------------------------------

ACTIVATOR = """
    import pytest
    from fleetcore.plugin.types import Activator
    from fleetcore.testing.conformance.activator import ActivatorKit

    RUNNING = {}

    class Fake:
        def __init__(self, options):
            pass

        def start(self, ctx):
            RUNNING[ctx.project] = ctx.release_dir.name

        def stop(self, ctx):
            BROKEN
            RUNNING.pop(ctx.project, None)

    class TestFake(ActivatorKit):
        @pytest.fixture
        def record(self):
            return Activator(name="fake", summary="In memory", factory=Fake,
                             detect=lambda d: (d / "fake").exists())

        @pytest.fixture
        def make_release(self, tmp_path):
            def make(marker):
                (tmp_path / marker).mkdir()
                (tmp_path / marker / "fake").touch()
                return tmp_path / marker
            return make

        @pytest.fixture
        def running(self):
            return lambda ctx: RUNNING.get(ctx.project)
"""


def test_activator_kit_passes_a_good_activator(pytester: pytest.Pytester) -> None:
    run_kit(pytester, ACTIVATOR.replace("BROKEN", "pass")).assert_outcomes(passed=5, skipped=1)


def test_activator_kit_fails_a_stop_that_needs_a_start(pytester: pytest.Pytester) -> None:
    broken = "if ctx.project not in RUNNING: raise KeyError(ctx.project)"
    result = run_kit(pytester, ACTIVATOR.replace("BROKEN", broken))
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*fake: stop() of a release that never started must be harmless*"])


# -- checks and drift fixes ---------------------------------------------------------------------

CHECKS = """
    import pytest
    from fleetcore.plugin.types import Check, DriftFix, Finding
    from fleetcore.testing.conformance import check_context
    from fleetcore.testing.conformance.checks import CheckKit
    from fleetcore.testing.conformance.drift import DriftFixKit

    def marker(ctx):
        path = ctx.release_dir / "marker"
        if not path.exists():
            RAISE_OR_REPORT
        CHANGE

    CHECK = Check(name="marker", summary="The marker is there", run=marker,
                  applies=lambda ctx: True)

    def fix(ctx, findings):
        FIX
        return "wrote the marker"

    class TestMarker(CheckKit):
        kind = "drift"

        @pytest.fixture
        def record(self):
            return CHECK

        @pytest.fixture
        def passing(self, record, kit_release):
            (kit_release / "marker").touch()
            return check_context("drift", kit_release, record=record)

        @pytest.fixture
        def failing(self, record, tmp_path):
            (tmp_path / "no-marker").mkdir()
            return check_context("drift", tmp_path / "no-marker", record=record)

    class TestFix(DriftFixKit):
        @pytest.fixture
        def record(self):
            return DriftFix(name="write-marker", summary="Writes the marker",
                            fixes={"marker-missing"}, run=fix)

        @pytest.fixture
        def check(self):
            return CHECK

        @pytest.fixture
        def drifted(self, tmp_path):
            return check_context("drift", tmp_path)
"""

GOOD_CHECK = {
    "RAISE_OR_REPORT": 'return [Finding(message="missing", code="marker-missing")]',
    "CHANGE": "pass",
    "FIX": '(ctx.release_dir / "marker").touch()',
}


def checks_source(**changes: str) -> str:
    source = CHECKS
    for key, value in {**GOOD_CHECK, **changes}.items():
        source = source.replace(key, value)
    return source


def test_check_kits_pass_a_good_check_and_fix(pytester: pytest.Pytester) -> None:
    run_kit(pytester, checks_source()).assert_outcomes(passed=8)


def test_check_kit_fails_a_check_that_raises_or_has_no_code(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, checks_source(RAISE_OR_REPORT='raise OSError("no marker")'))
    result.stdout.fnmatch_lines_random(
        ["*marker: an ordinary failure must be reported as findings, not raised (OSError*"]
    )
    result = run_kit(pytester, checks_source(RAISE_OR_REPORT='return [Finding(message="missing")]'))
    result.stdout.fnmatch_lines_random(["*marker: drift findings carry a code*"])


def test_check_kit_fails_a_check_that_changes_the_release(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, checks_source(CHANGE='(ctx.release_dir / "seen").touch()'))
    result.stdout.fnmatch_lines_random(["*marker: checking changed the release: seen*"])


def test_drift_fix_kit_fails_a_fix_that_does_not_hold(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, checks_source(FIX="pass"))
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*write-marker: the fix (wrote the marker) did not hold*"])


# -- secrets providers ----------------------------------------------------------------------------

SECRETS = """
    import logging
    import pytest
    from fleetcore.errors import FleetcoreError
    from fleetcore.plugin.types import SecretsProvider
    from fleetcore.testing.conformance.secrets import SecretsProviderKit

    log = logging.getLogger("fake.secrets")

    class FromFile:
        def __init__(self, options):
            pass

        def provide(self, ctx):
            values = {}
            for line in (ctx.release_dir / "secrets.txt").read_text().splitlines():
                key, _, value = line.partition("=")
                if key == "REFUSED":
                    raise FleetcoreError(REFUSAL)
                values[key] = value
                LOG
            return values

    class TestFromFile(SecretsProviderKit):
        @pytest.fixture
        def record(self):
            return SecretsProvider(name="from-file", summary="A file", factory=FromFile)

        @pytest.fixture
        def provision(self):
            def provision(release, device, secrets):
                text = "".join(f"{k}={v}\\n" for k, v in secrets.items())
                (release / "secrets.txt").write_text(text)
            return provision

        @pytest.fixture
        def provision_refused(self):
            def provision(release, device, secrets):
                text = "".join(f"REFUSED={v}\\n" for v in secrets.values())
                (release / "secrets.txt").write_text(text)
            return provision
"""


def secrets_source(log: str = "pass", refusal: str = '"not for this device"') -> str:
    return SECRETS.replace("LOG", log).replace("REFUSAL", refusal)


def test_secrets_kit_passes_a_good_provider(pytester: pytest.Pytester) -> None:
    run_kit(pytester, secrets_source()).assert_outcomes(passed=5)


def test_secrets_kit_fails_a_provider_that_logs_or_shows_values(
    pytester: pytest.Pytester,
) -> None:
    result = run_kit(pytester, secrets_source(log='log.debug("read %s=%s", key, value)'))
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*from-file: the values of KIT_API_TOKEN, KIT_DB_PASSWORD*"])
    result = run_kit(pytester, secrets_source(refusal='f"refused {value!r}"'))
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*from-file: the values of KIT_API_TOKEN are in the error*"])


# -- event channels -------------------------------------------------------------------------

CHANNEL = """
    import threading
    import pytest
    from fleetcore.plugin.types import EventChannel
    from fleetcore.testing.conformance.channels import EventChannelKit

    SUBSCRIBERS = []

    class Publisher:
        def __init__(self, options):
            pass

        def publish(self, events):
            for event in events:
                for sub in list(SUBSCRIBERS):
                    if DELIVER:
                        threading.Thread(target=sub.wake, args=(event.name,)).start()

        def close(self):
            pass

    class Subscriber:
        def __init__(self, options, device_id, wake):
            self.device_id, self.wake = device_id, wake

        def start(self):
            SUBSCRIBERS.append(self)

        def close(self):
            SUBSCRIBERS.remove(self)

    class TestInMemory(EventChannelKit):
        @pytest.fixture
        def record(self):
            return EventChannel(name="memory", summary="In memory", publisher=Publisher,
                                subscriber=Subscriber)

        @pytest.fixture
        def options(self):
            return {}
"""


def test_channel_kit_passes_a_good_channel(pytester: pytest.Pytester) -> None:
    good = CHANNEL.replace(
        "DELIVER",
        'sub.device_id == event.device_id and event.name in ("update-available", "policy-changed")',
    )
    # The fleet-subscriber check passes by itself: this channel has none (optional).
    run_kit(pytester, good).assert_outcomes(passed=5, skipped=1)


def test_channel_kit_fails_a_channel_that_wakes_everybody(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, CHANNEL.replace("DELIVER", "True"))
    result.assert_outcomes(passed=3, failed=2, skipped=1)
    result.stdout.fnmatch_lines_random(
        [
            "*memory: an event for kit-device-1 woke kit-device-2*",
            "*memory: wake() was called with ?'kit-not-an-event'?*",
        ]
    )


# -- alert channels -------------------------------------------------------------------------

ALERT_CHANNEL = """
    import pytest
    from fleetcore.plugin import AlertChannel
    from fleetcore.testing.conformance.alerts import AlertChannelKit

    RECEIVED = []

    class Sender:
        def __init__(self, options):
            pass

        def send(self, alerts):
            RECEIVED.extend(KEEP)

        def close(self):
            pass

    class TestInMemory(AlertChannelKit):
        timeout = 2.0

        @pytest.fixture
        def record(self):
            return AlertChannel(name="memory", summary="In memory", sender=Sender)

        @pytest.fixture
        def options(self):
            return {}

        @pytest.fixture
        def arrived(self):
            return lambda alert: any(a.labels["kit"] == alert.labels["kit"] for a in RECEIVED)
"""


def test_alert_kit_passes_a_good_channel(pytester: pytest.Pytester) -> None:
    good = ALERT_CHANNEL.replace("KEEP", "alerts")
    # Without unreachable_options the "receiver down" check is skipped.
    run_kit(pytester, good).assert_outcomes(passed=5, skipped=1)


def test_alert_kit_fails_a_channel_that_loses_a_batch(pytester: pytest.Pytester) -> None:
    result = run_kit(pytester, ALERT_CHANNEL.replace("KEEP", "alerts[:1]"))
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*memory: alert kit-rollout-halted (kit-*) never arrived*"])


# -- records --------------------------------------------------------------------------------------


def test_options_whose_defaults_are_refused_fail_the_record_check() -> None:
    from attrs import field, frozen

    from fleetcore.config.convert import between, checked
    from fleetcore.plugin.types import RolloutStrategy
    from fleetcore.testing.contracts import structure_options

    @frozen(kw_only=True)
    class Options:
        percent: int = field(default=0, validator=checked(between(1, 100)))

    record = RolloutStrategy(
        name="bad-default", summary="Its default is refused", factory=object, config_type=Options
    )
    with pytest.raises(AssertionError, match="bad-default: the default options are refused"):
        structure_options(record, {"percent": 5})
