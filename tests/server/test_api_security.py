"""The HTTP API under attack: its OpenAPI document matches the routes and
bodies the server validates; Schemathesis fuzzes a real server as each
role; and every route answers each kind of caller as the table says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetcore.server import bodies as b
from fleetcore.server.openapi import BODIES
from fleetcore.server.secrets import SecretRequest

ROUTES = Path(__file__).parents[2] / "src/fleetcore/server/routes"


def _api_operations(server: Any) -> dict[tuple[str, str], Any]:
    doc = server.request("GET", "/v1/openapi.json").json()
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def test_the_openapi_document_is_the_routes_and_bodies_the_server_checks(server: Any) -> None:
    r = server.request("GET", "/v1/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"].startswith("3.")
    operations = _api_operations(server)
    # Every API route of the app is in it, and nothing else.
    app_routes = {
        (method, route.path)
        for route in server.app.routes
        if route.path.startswith("/v1/") or route.path == "/metrics"
        for method in route.methods - {"HEAD"}
    }
    assert set(operations) == app_routes
    # Every route that writes says which body it takes ...
    writing = {key for key in operations if key[0] in ("POST", "PUT", "DELETE")}
    assert writing == set(BODIES), writing ^ set(BODIES)
    # ... and the body classes the handlers parse are exactly those the document names.
    parsed = set()
    for module in ROUTES.glob("*.py"):
        parsed |= set(
            re.findall(r"body(?:_or_empty)?\(request, (?:b\.)?(\w+)\)", module.read_text())
        )
    # (Status reports and history entries are parsed by the device writer,
    # once their credential has been checked.)
    written = {"StatusReport", "HistoryBody"}
    named = {cls.__name__ for cls in BODIES.values() if cls is not None} - written
    assert parsed == named
    # A body's schema is its class's fields.
    enroll = operations[("POST", "/v1/enroll")]["requestBody"]["content"]["application/json"]
    schemas = r.json()["components"]["schemas"]
    assert enroll["schema"] == {"$ref": "#/components/schemas/EnrollRequest"}
    assert set(schemas["EnrollRequest"]["properties"]) == {
        "enrollment_token", "device_id", "role", "segment", "hostname", "labels", "branch",
    }  # fmt: skip
    assert schemas["EnrollRequest"]["required"] == ["enrollment_token", "device_id", "role"]
    assert schemas["EnrollRequest"]["additionalProperties"] is False
    assert schemas["SecretRequest"]["required"] == ["value"]
    assert SecretRequest in BODIES.values() and b.StatusReport in BODIES.values()


@pytest.mark.parametrize("who", ["nobody", "viewer", "operator", "admin", "device"])
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    server: Any, who: str, tmp_path: Path
) -> None:
    headers = []
    if who == "device":
        headers = ["-H", f"Authorization: Bearer {server.enroll('pi-1')}"]
    elif who != "nobody":
        headers = ["-H", f"Authorization: Bearer {server.token(who)}"]
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/v1/openapi.json",
            *headers,
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "5",
            "--seed",
            "7",
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # its cache folder goes there, not into the checkout
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    tested = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert tested is not None and int(tested.group(1)) > 100, run.stdout[-2000:]
    assert tested.group(1) == tested.group(2)


OK = "ok"  # authorised: 2xx, 3xx, or a 4xx about the request itself (400, 404, 409)
CALLERS = ("none", "viewer", "operator", "admin", "device", "other", "revoked", "expired")
PUBLIC = (OK, OK, OK, OK, OK, OK, OK, OK)
ANY = (401, OK, OK, OK, OK, OK, 401, 401)  # any operator or enrolled device
OWN_READ = (401, OK, OK, OK, OK, 403, 401, 401)  # operators, and the device itself
OWN_WRITE = (401, 403, 403, 403, OK, 403, 401, 401)  # the device itself only
VIEW = (401, OK, OK, OK, 403, 403, 401, 401)
OPERATE = (401, 403, OK, OK, 403, 403, 401, 401)
ADMIN = (401, 403, 403, OK, 403, 403, 401, 401)

# (method, path, body, expected per caller). {head} is a commit of the repo;
# the device is pi-1, "other" is pi-2's credential. Rotation comes last: it
# replaces pi-1's credential.
MATRIX: list[tuple[str, str, Any, tuple[Any, ...]]] = [
    ("GET", "/v1/openapi.json", None, PUBLIC),
    ("GET", "/v1/health", None, PUBLIC),
    ("GET", "/v1/bare", None, PUBLIC),
    ("POST", "/v1/bare", None, PUBLIC),
    ("GET", "/metrics", None, PUBLIC),
    (
        "POST",
        "/v1/enroll",
        {"enrollment_token": "{enroll}", "device_id": "pi-1", "role": "web"},
        PUBLIC,
    ),
    ("GET", "/v1/devices/pi-1/desired", None, OWN_READ),
    ("POST", "/v1/devices/pi-1/status", {"status": "healthy"}, OWN_WRITE),
    ("POST", "/v1/devices/pi-1/history", {"entries": []}, OWN_WRITE),
    ("GET", "/v1/devices/pi-1/events", None, OWN_READ),
    ("GET", "/v1/devices/pi-1/secrets", None, OWN_WRITE),
    ("GET", "/v1/archives/{head}/web", None, ANY),
    ("GET", "/v1/manifests/{head}/web", None, ANY),
    ("GET", "/v1/proofs/{head}/web", None, ANY),
    ("GET", "/v1/relation/{head}/{head}", None, ANY),
    ("GET", "/v1/devices", None, VIEW),
    ("GET", "/v1/devices/pi-1", None, OWN_READ),  # a device reads its own record
    ("GET", "/v1/fleet/status", None, VIEW),
    ("GET", "/v1/audit", None, VIEW),
    ("GET", "/v1/rollouts", None, VIEW),
    ("GET", "/v1/rollouts/999", None, VIEW),
    ("GET", "/v1/secrets/web", None, VIEW),
    ("GET", "/v1/device-secrets/pi-1", None, VIEW),
    ("GET", "/v1/incidents", None, VIEW),
    ("GET", "/v1/incidents/999", None, VIEW),
    ("GET", "/v1/fleet/blast-radius", None, VIEW),
    ("POST", "/v1/rollouts", {"commit": "{head}", "strategy": "no-such"}, OPERATE),
    ("POST", "/v1/rollouts/999/halt", {}, OPERATE),
    ("POST", "/v1/devices/pi-1/resume", {}, OPERATE),
    ("POST", "/v1/devices/nobody/wake", {}, OPERATE),
    ("POST", "/v1/devices/nobody/check", {}, OPERATE),
    ("POST", "/v1/devices/nobody/safe-mode", {}, OPERATE),
    ("POST", "/v1/devices/nobody/logs/request", None, OPERATE),
    ("GET", "/v1/devices/pi-1/logs", None, VIEW),
    ("POST", "/v1/devices/pi-1/logs", {"taken_at": "now", "lines": ["x"]}, OWN_WRITE),
    ("POST", "/v1/hooks/git", None, OPERATE),
    ("PUT", "/v1/fleet/pin", {"commit": "no-such"}, ADMIN),
    ("DELETE", "/v1/fleet/pin", {}, ADMIN),
    ("PUT", "/v1/fleet/maintenance-window", {"maintenance_window": None}, ADMIN),
    ("PUT", "/v1/fleet/blast-radius", {"no_such_key": 1}, ADMIN),
    ("POST", "/v1/fleet/halt-all", {"no_such_key": 1}, ADMIN),
    ("POST", "/v1/fleet/resume-all", {}, ADMIN),
    ("PUT", "/v1/devices/pi-1/lock", {"commit": "no-such"}, ADMIN),
    ("DELETE", "/v1/devices/pi-1/lock", {}, ADMIN),
    ("PUT", "/v1/devices/pi-1/override", {"clear": True}, ADMIN),
    ("POST", "/v1/devices/nobody/revoke", {}, ADMIN),
    ("GET", "/v1/tokens", None, ADMIN),
    ("POST", "/v1/tokens", {"role": "root"}, ADMIN),
    ("DELETE", "/v1/tokens/999999", {}, ADMIN),
    ("POST", "/v1/enrollment-tokens", {"max_uses": 0}, ADMIN),
    ("POST", "/v1/devices/nobody/allow-reenroll", {"reason": "x"}, ADMIN),
    ("POST", "/v1/devices/nobody/accept", {}, ADMIN),
    ("PUT", "/v1/secrets/web/{bad}", {"value": "v"}, ADMIN),
    ("DELETE", "/v1/secrets/web/NOPE", {}, ADMIN),
    ("PUT", "/v1/device-secrets/nobody/X", {"value": "v"}, ADMIN),
    ("DELETE", "/v1/device-secrets/pi-1/NOPE", {}, ADMIN),
    ("POST", "/v1/devices/pi-1/credential", {}, OWN_WRITE),
]


def _template(path: str) -> str:
    """The route a matrix path is a request to."""
    for old, new in (
        (r"/v1/devices/[\w-]+/", "/v1/devices/{device_id}/"),
        (r"^/v1/devices/[\w-]+$", "/v1/devices/{device_id}"),
        (r"/v1/device-secrets/[\w-]+", "/v1/device-secrets/{device_id}"),
        (r"/v1/archives/[^/]+/[^/]+", "/v1/archives/{commit}/{role}"),
        (r"/v1/manifests/[^/]+/[^/]+", "/v1/manifests/{commit}/{role}"),
        (r"/v1/proofs/[^/]+/[^/]+", "/v1/proofs/{commit}/{role}"),
        (r"/v1/relation/[^/]+/[^/]+", "/v1/relation/{old}/{new}"),
        (r"/v1/rollouts/\d+/\w+", "/v1/rollouts/{rollout_id}/{action}"),
        (r"/v1/rollouts/\d+$", "/v1/rollouts/{rollout_id}"),
        (r"/v1/tokens/\d+", "/v1/tokens/{token_id}"),
        (r"/v1/incidents/\d+", "/v1/incidents/{incident_id}"),
        (r"/v1/secrets/web/[^/]+", "/v1/secrets/{role}/{name}"),
        (r"/v1/secrets/web$", "/v1/secrets/{role}"),
        (r"/v1/device-secrets/\{device_id\}/[^/]+", "/v1/device-secrets/{device_id}/{name}"),
    ):
        path = re.sub(old, new, path)
    return path


def test_every_route_answers_every_caller_as_the_table_says(
    server: Any, repo: Any, clock: Any
) -> None:
    assert {(m, _template(p)) for m, p, _b, _e in MATRIX} == set(_api_operations(server))
    head = repo.git("rev-parse", "HEAD")
    admin = server.token("admin")
    creds = {"device": server.enroll("pi-1"), "other": server.enroll("pi-2")}
    revoked = server.enroll("pi-3")
    r = server.request("POST", "/v1/devices/pi-3/revoke", admin, json={"reason": "lost"})
    assert r.status_code == 200
    r = server.request(
        "POST", "/v1/tokens", admin, json={"role": "admin", "expires": "2026-01-01T12:30:00Z"}
    )
    expired = r.json()["token"]
    tokens = {
        "none": None,
        "viewer": server.token("viewer"),
        "operator": server.token("operator"),
        "admin": admin,
        **creds,
        "revoked": revoked,
        "expired": expired,
    }
    clock.sleep(3600)  # the expiring token lapses
    enroll = server.enrollment_token()
    values = {"{head}": head, "{enroll}": enroll, "{bad}": "bad-name"}
    mismatches = []
    for method, template, raw, expected in MATRIX:
        path = template
        for old, new in values.items():
            path = path.replace(old, new)
        body = raw
        if isinstance(raw, dict):
            body = {k: values.get(v, v) if isinstance(v, str) else v for k, v in raw.items()}
        for caller, want in zip(CALLERS, expected, strict=True):
            r = server.request(
                method, path, tokens[caller], json=body, stream=path.endswith("/events")
            )
            got = r.status_code
            r.close()
            assert got < 500, (method, path, caller, got)
            seen = got if got in (401, 403) else OK
            if seen != want:
                mismatches.append(f"{method} {path} as {caller}: {got}, expected {want}")
    assert not mismatches, "\n".join(mismatches)
