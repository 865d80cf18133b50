"""Device labels: sent with the enrollment and the status reports, stored per
device, shown and filtered on (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any


def test_labels_are_stored_replaced_and_filtered(make_server: Any, db_url: str | None) -> None:
    server = make_server(db_url)
    viewer = server.token("viewer")
    pi4 = server.enroll("pi-1", labels={"hardware": "pi4", "network": "site-a"})
    pi3 = server.enroll("pi-2", labels={"hardware": "pi3", "network": "site-a"})
    server.enroll("pi-3")  # an agent without [labels], or an older one

    def device(device_id: str) -> dict[str, Any]:
        r = server.request("GET", f"/v1/devices/{device_id}", viewer)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def listed(*selectors: str) -> list[str]:
        r = server.request("GET", "/v1/devices", viewer, params=[("label", s) for s in selectors])
        assert r.status_code == 200, r.text
        return [d["device_id"] for d in r.json()["devices"]]

    assert device("pi-1")["labels"] == {"hardware": "pi4", "network": "site-a"}
    assert device("pi-3")["labels"] == {}
    r = server.request("GET", "/v1/devices", viewer)
    assert {d["device_id"]: d["labels"] for d in r.json()["devices"]} == {
        "pi-1": {"hardware": "pi4", "network": "site-a"},
        "pi-2": {"hardware": "pi3", "network": "site-a"},
        "pi-3": {},
    }

    # A report without labels leaves them; one with labels replaces them all.
    server.report("pi-1", pi4, status="healthy")
    assert device("pi-1")["labels"] == {"hardware": "pi4", "network": "site-a"}
    server.report("pi-1", pi4, status="healthy", labels={"hardware": "pi4", "network": "site-b"})
    assert device("pi-1")["labels"] == {"hardware": "pi4", "network": "site-b"}
    server.report("pi-2", pi3, status="healthy", labels=None)  # null: as if left out
    assert device("pi-2")["labels"] == {"hardware": "pi3", "network": "site-a"}
    server.report("pi-2", pi3, status="healthy", labels={})
    assert device("pi-2")["labels"] == {}
    server.report("pi-2", pi3, status="healthy", labels={"hardware": "pi3", "network": "site-a"})

    assert listed() == ["pi-1", "pi-2", "pi-3"]
    assert listed("hardware=pi3") == ["pi-2"]
    assert listed("network=site-a") == ["pi-2"]
    assert listed("network=site-b", "hardware=pi4") == ["pi-1"]
    assert listed("network=site-b", "hardware=pi3") == []  # all must match
    assert listed("hardware=") == []  # an empty value is a value
    assert listed("hardware=pi4", "hardware=pi3") == []
    r = server.request("GET", "/v1/devices", viewer, params={"label": "hardware"})
    assert r.status_code == 400 and r.json()["field"] == "label"

    # A re-enrollment (allowed by an admin) without labels keeps them; with
    # labels, replaces them.
    admin = server.token("admin")

    def allow() -> None:
        r = server.request("POST", "/v1/devices/pi-2/allow-reenroll", admin, json={"reason": "x"})
        assert r.status_code == 200, r.text

    allow()
    server.enroll("pi-2")
    assert device("pi-2")["labels"] == {"hardware": "pi3", "network": "site-a"}
    allow()
    server.enroll("pi-2", labels={"hardware": "pi5"})
    assert device("pi-2")["labels"] == {"hardware": "pi5"}


def test_bad_labels_are_refused_naming_the_key(make_server: Any, db_url: str | None) -> None:
    server = make_server(db_url)
    viewer = server.token("viewer")
    cred = server.enroll("pi-1", labels={"hardware": "pi4"})
    token = server.enrollment_token()
    enroll = {"enrollment_token": token, "device_id": "pi-9", "role": "web"}
    for labels, field, message in (
        ({"has space": "x"}, "labels.has space", "letters, digits"),
        ({"k" * 64: "x"}, f"labels.{'k' * 64}", "at most 63"),
        ({"hardware": 4}, "labels.hardware", "must be a string"),
        ({"hardware": "x" * 201}, "labels.hardware", "at most 200"),
        ({f"k{i}": "v" for i in range(33)}, "labels", "at most 32 labels"),
        (["hardware=pi4"], "labels", "expected a table"),
    ):
        r = server.request("POST", "/v1/enroll", json={**enroll, "labels": labels})
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field and message in r.json()["error"], r.json()
        r = server.request(
            "POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy", "labels": labels}
        )
        assert r.status_code == 400, r.text
        assert r.json()["field"] == field and message in r.json()["error"], r.json()
    # Nothing changed: no device enrolled, no label touched.
    devices = server.request("GET", "/v1/devices", viewer).json()["devices"]
    assert [(d["device_id"], d["labels"]) for d in devices] == [("pi-1", {"hardware": "pi4"})]
    # The limits themselves are fine.
    most = {f"{'k' * 60}{i:02}": "v" * 200 for i in range(32)}
    server.report("pi-1", cred, status="healthy", labels=most)
    assert server.request("GET", "/v1/devices/pi-1", viewer).json()["labels"] == most


def test_labels_reported_together_land_on_each_device(make_server: Any, db_url: str | None) -> None:
    """Reports with and without labels share batches (group commit, one
    statement per set of keys): each device keeps its own, exactly, quotes
    and all."""
    server = make_server(db_url)
    viewer = server.token("viewer")
    devices = {f"pi-{i}": server.enroll(f"pi-{i}", labels={"n": "start"}) for i in range(12)}

    def report(device_id: str, credential: str) -> None:
        for n in range(6):
            body: dict[str, Any] = {"status": "healthy", "uptime_seconds": n}
            if n % 2 == 0:
                body["labels"] = {"n": f"{device_id} {n}", "quote": 'say "hi" \\ ✓'}
            r = server.request("POST", f"/v1/devices/{device_id}/status", credential, json=body)
            assert r.status_code == 204, r.text

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(report, devices, devices.values()))
    for d in server.request("GET", "/v1/devices", viewer).json()["devices"]:
        assert d["uptime_seconds"] == 5
        assert d["labels"] == {"n": f"{d['device_id']} 4", "quote": 'say "hi" \\ ✓'}
