"""Failure pattern analysis: what failing devices share, which label values
fail far more often than the rest, and the diagnosis an operator reads."""

from __future__ import annotations

import math
import random

import pytest

from fleetcore.server import patterns as p
from fleetcore.server.patterns import DeviceFacts, DeviceFailure, analyse, normalise_error

WINDOW = 300.0


def fleet(n: int, role: str = "camera", **labels: str) -> list[DeviceFacts]:
    return [DeviceFacts(f"{role}-{i:04d}", role, dict(labels)) for i in range(n)]


def fail(
    d: DeviceFacts, error: str = "health: check web failed", at: float = 1000.0
) -> DeviceFailure:
    return DeviceFailure(d.device_id, d.role, error, dict(d.labels), at)


# --- error normalisation ------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "health: http://10.0.0.7:8080/health timed out after 3.2s",
            "health: http://10.0.0.9:8081/health timed out after 12s",
        ),
        (
            "container 3f2a9c1b7e4d exited with code 137",
            "container 9be01a2c4d5f exited with code 1",
        ),
        ("fetch abc1234def of role web failed", "fetch 0123456789abcdef0123 of role web failed"),
        (
            "secret 123e4567-e89b-12d3-a456-426614174000 missing",
            "secret 00000000-1111-2222-3333-444444444444 missing",
        ),
        (
            "cannot write /var/lib/fleetcore/roles/web/state.json",
            "cannot write /srv/other/place.json",
        ),
        ("no   space\nleft", "no space left"),
    ],
)
def test_errors_that_differ_only_in_ids_numbers_and_paths_compare_equal(a: str, b: str) -> None:
    assert normalise_error(a) == normalise_error(b)


def test_normalisation_keeps_the_words_that_tell_errors_apart() -> None:
    assert normalise_error("container web exited") != normalise_error("container db exited")
    assert normalise_error("health: timed out") != normalise_error("health: refused")
    # plain words with hex letters only are words, not ids
    assert "deadbeef" not in normalise_error("commit deadbee1f failed")
    assert normalise_error("decade facade") == "decade facade"
    assert normalise_error("x" * 500) == "x" * 200


# --- the seed's questions and rules -------------------------------------------


def test_all_failures_sharing_role_and_error_is_a_role_config_issue() -> None:
    cams = fleet(10, "camera", hardware="pi4", network="site-a")
    pattern = analyse(
        [fail(d, f"health: port {8000 + i} refused", at=1000 + i) for i, d in enumerate(cams[:4])],
        cams + fleet(10, "sensor", hardware="pi4", network="site-b"),
        WINDOW,
    )
    assert pattern["same_role"] == "camera"
    assert pattern["same_error"] == "health: port <n> refused"
    assert pattern["same_hardware"] == "pi4"
    assert pattern["same_network"] == "site-a"
    assert pattern["same_timeframe"] is True
    assert pattern["shared_labels"] == {"hardware": "pi4", "network": "site-a"}
    assert pattern["diagnosis"] == p.ROLE_CONFIG
    assert pattern["failed_devices"] == 4
    assert pattern["population"] == 20
    assert pattern["failure_rate"] == 0.2


def test_same_error_across_roles_in_a_burst_is_a_code_bug() -> None:
    web, db = fleet(5, "web", network="a"), fleet(5, "db", network="b")
    pattern = analyse([fail(web[0], at=10), fail(db[0], at=40)], web + db, WINDOW)
    assert pattern["same_role"] is None
    assert pattern["same_network"] is None
    assert pattern["same_timeframe"] is True
    assert pattern["diagnosis"] == p.CODE_BUG


def test_failures_spread_over_the_window_are_not_one_time_frame() -> None:
    web, db = fleet(5, "web"), fleet(5, "db")
    pattern = analyse([fail(web[0], at=0), fail(db[0], at=250)], web + db, WINDOW)
    assert pattern["same_timeframe"] is False
    assert pattern["timeframe"]["span_seconds"] == 250
    assert pattern["diagnosis"] == p.UNKNOWN


def test_shared_network_with_different_errors_is_network_infrastructure() -> None:
    devices = fleet(4, "web", network="shop-12") + fleet(4, "db", network="shop-12")
    devices += fleet(4, "cache", network="shop-13")
    pattern = analyse(
        [fail(devices[0], "dns lookup failed", at=0), fail(devices[5], "connection reset", at=280)],
        devices,
        WINDOW,
    )
    assert pattern["same_network"] == "shop-12"
    assert pattern["same_error"] is None
    assert pattern["diagnosis"] == p.NETWORK


def test_nothing_in_common_is_unknown_and_says_so() -> None:
    a = fleet(3, "web", network="x", hardware="pi3")
    b = fleet(3, "db", network="y", hardware="pi4")
    pattern = analyse([fail(a[0], "oom", at=0), fail(b[0], "disk full", at=299)], a + b, WINDOW)
    for key in ("same_role", "same_error", "same_hardware", "same_network"):
        assert pattern[key] is None
    assert pattern["shared_labels"] == {}
    assert pattern["implicated"] == []
    assert pattern["diagnosis"] == "Unknown pattern - investigate manually"
    assert pattern["explanation"][0] == "2 of 6 device(s) failed (33%)."


def test_no_failures_gives_an_empty_pattern() -> None:
    pattern = analyse([], fleet(5), WINDOW)
    assert pattern["diagnosis"] == p.NO_FAILURES
    assert pattern["failed_devices"] == 0
    assert pattern["same_timeframe"] is False


def test_a_device_failing_twice_counts_once_with_its_latest_error() -> None:
    devices = fleet(4)
    pattern = analyse(
        [
            fail(devices[0], "fetch failed", at=10),
            fail(devices[0], "health failed", at=20),
            fail(devices[1], "health failed", at=15),
        ],
        devices,
        WINDOW,
    )
    assert pattern["failed_devices"] == 2
    assert pattern["same_error"] == "health failed"
    assert pattern["errors"] == [{"error": "health failed", "devices": 2}]


def test_failing_devices_missing_from_the_population_are_counted_in_it() -> None:
    stranger = DeviceFailure("ghost", "web", "boom", {"hardware": "x86"}, 5.0)
    pattern = analyse([stranger], fleet(3, "web"), WINDOW)
    assert pattern["population"] == 4
    assert pattern["same_hardware"] == "x86"


# --- implication: far more often, even if not everyone shares it --------------


def test_pi3_failing_90_percent_against_pi4_2_percent_is_implicated_strongly() -> None:
    pi3 = fleet(100, "camera", hardware="pi3")
    pi4 = [DeviceFacts(f"pi4-{i}", "camera", {"hardware": "pi4"}) for i in range(100)]
    failures = [fail(d, at=float(i)) for i, d in enumerate(pi3[:90])]
    failures += [fail(d, "oom", at=5.0) for d in pi4[:2]]
    pattern = analyse(failures, pi3 + pi4, WINDOW)
    assert pattern["same_hardware"] is None  # two pi4 failures break "all share"
    top = pattern["implicated"][0]
    assert (top["label"], top["value"]) == ("hardware", "pi3")
    assert (top["failed"], top["devices"], top["rate"]) == (90, 100, 0.9)
    assert (top["others_failed"], top["others"], top["others_rate"]) == (2, 100, 0.02)
    assert top["evidence"] == "strong"
    assert top["p_value"] < 1e-20
    assert all(i["value"] != "pi4" for i in pattern["implicated"])
    assert pattern["diagnosis"] == p.HARDWARE
    assert any("hardware=pi3 fails 90%" in line for line in pattern["explanation"])


def test_random_failures_implicate_nothing() -> None:
    rnd = random.Random(7)
    devices = [
        DeviceFacts(
            f"d{i}",
            rnd.choice(["web", "db"]),
            {"hardware": rnd.choice(["pi3", "pi4"]), "network": rnd.choice("abcd")},
        )
        for i in range(1000)
    ]
    failures = [fail(d, at=rnd.uniform(0, 300)) for d in devices if rnd.random() < 0.02]
    pattern = analyse(failures, devices, WINDOW)
    assert pattern["implicated"] == []
    assert pattern["same_hardware"] is None


def test_a_label_everybody_has_gives_no_contrast() -> None:
    devices = fleet(20, hardware="pi4")
    pattern = analyse([fail(d) for d in devices[:15]], devices, WINDOW)
    assert pattern["same_hardware"] == "pi4"
    assert pattern["implicated"] == []


def test_a_single_failing_device_implicates_nothing() -> None:
    devices = [*fleet(50, hardware="pi4"), DeviceFacts("odd", "camera", {"hardware": "pi5"})]
    pattern = analyse([fail(devices[-1])], devices, WINDOW)
    assert pattern["implicated"] == []


def test_roles_are_tested_like_labels() -> None:
    cams, sensors = fleet(30, "camera"), fleet(30, "sensor")
    failures = [fail(d, f"err {i}") for i, d in enumerate(cams[:20])] + [fail(sensors[0], "x")]
    implicated = analyse(failures, cams + sensors, WINDOW)["implicated"]
    assert [(i["label"], i["value"]) for i in implicated] == [("role", "camera")]


def test_evidence_grows_with_the_number_of_devices() -> None:
    # half the pi3 fail, one pi4: the same rates, more devices
    def evidence(n: int) -> str | None:
        bad = fleet(n, "web", hardware="pi3")
        good = [DeviceFacts(f"ok{i}", "web", {"hardware": "pi4"}) for i in range(n)]
        failures = [fail(d) for d in bad[: n // 2]] + [fail(good[0])]
        found = analyse(failures, bad + good, WINDOW)["implicated"]
        return str(found[0]["evidence"]) if found else None

    assert evidence(8) is None  # 4 of 8 against 1 of 8 could be chance
    assert evidence(16) == "weak"
    assert evidence(20) == "moderate"
    assert evidence(60) == "strong"


# --- the test statistic itself ------------------------------------------------


def test_fisher_matches_the_hypergeometric_tail_computed_exactly() -> None:
    def exact(a: int, n_with: int, failed: int, total: int) -> float:
        num = sum(
            math.comb(failed, x) * math.comb(total - failed, n_with - x)
            for x in range(a, min(failed, n_with) + 1)
        )
        return num / math.comb(total, n_with)

    for args in [(3, 5, 4, 20), (1, 10, 1, 30), (9, 10, 12, 50), (0, 4, 2, 8), (7, 7, 7, 7)]:
        assert p.fisher_one_sided(*args) == pytest.approx(exact(*args), rel=1e-9)


def test_fisher_is_one_when_any_count_would_do() -> None:
    assert p.fisher_one_sided(0, 10, 5, 100) == pytest.approx(1.0)


def test_analysis_of_a_large_fleet_stays_exact_and_json_ready() -> None:
    import json

    devices = fleet(1400, "camera", hardware="pi4") + [
        DeviceFacts(f"pi3-{i}", "camera", {"hardware": "pi3"}) for i in range(600)
    ]
    failures = [fail(d, at=1.0) for d in devices[1400:1700]]
    pattern = analyse(failures, devices, WINDOW)
    assert pattern["same_hardware"] == "pi3"
    top = pattern["implicated"][0]
    assert (top["value"], top["rate"], top["others_rate"]) == ("pi3", 0.5, 0.0)
    assert top["p_value"] < 1e-100
    assert json.loads(json.dumps(pattern)) == pattern


# --- what everybody in scope has explains nothing ------------------------------


def test_a_one_role_fleet_failing_on_one_hardware_is_a_hardware_issue() -> None:
    pi3, pi4 = fleet(30, "web", hardware="pi3"), fleet(70, "web", hardware="pi4")
    pi4 = [DeviceFacts(f"pi4-{i}", d.role, d.labels) for i, d in enumerate(pi4)]
    pattern = analyse([fail(d, at=1000 + i) for i, d in enumerate(pi3[:12])], pi3 + pi4, WINDOW)
    assert pattern["same_role"] == "web"  # true, but every device is "web"
    assert pattern["scope_shares"] == {"role": "web"}
    assert pattern["same_hardware"] == "pi3"
    assert pattern["diagnosis"] == p.HARDWARE


def test_a_one_role_fleet_with_nothing_else_in_common_still_reads_as_role_config() -> None:
    devices = fleet(10, "web", hardware="pi4") + [
        DeviceFacts(f"x-{i}", "web", {"hardware": "pi3"}) for i in range(10)
    ]
    failures = [fail(devices[0], at=0), fail(devices[15], at=200)]
    pattern = analyse(failures, devices, WINDOW)
    assert pattern["same_hardware"] is None
    assert pattern["diagnosis"] == p.ROLE_CONFIG


def test_a_network_every_device_is_on_is_no_network_issue() -> None:
    web, db = fleet(5, "web", network="hq"), fleet(5, "db", network="hq")
    pattern = analyse(
        [fail(web[0], "dns lookup failed", at=0), fail(db[0], "connection reset", at=280)],
        web + db,
        WINDOW,
    )
    assert pattern["same_network"] == "hq"
    assert pattern["scope_shares"] == {"network": "hq"}
    assert pattern["diagnosis"] == p.UNKNOWN
