"""TLS (``mqtts://`` with ``ca_file``) and broker logins, against a real
mosquitto that refuses everything else."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.testing.mosquitto import Mosquitto
from fleetcore.testing.services import missing

from .conftest import Channel, event, options, subscribed


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("fleetcore test CA"))
        .issuer_name(name("fleetcore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "broker.pem", folder / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    tls = certificates(tmp_path)
    broker = Mosquitto.start(tls=tls, users={"fleet-server": "s3rver", "pi-9": "d3vice"})
    if broker is None:
        missing("mosquitto (the MQTT broker)")
        raise AssertionError("unreachable")
    yield broker, tls[0]
    broker.stop()


def test_tls_and_a_login_carry_events(secure_broker, channel: Channel, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, "fleetcore.mqtt")
    broker, ca = secure_broker
    assert broker.url.startswith("mqtts://")
    secret = tmp_path / "password"
    secret.write_text("d3vice\n")
    device = options(broker.url, ca_file=str(ca), username="pi-9", password_file=str(secret))
    _, woken = channel.subscriber(device, "pi-9")
    assert subscribed(caplog, "pi-9")
    server = options(broker.url, ca_file=str(ca), username="fleet-server", password="s3rver")
    channel.publisher(server).publish([event("pi-9")])
    assert woken.wait(1) and woken.names == ["update-available"]


def test_a_wrong_password_is_refused(secure_broker, channel: Channel, caplog) -> None:
    caplog.set_level(logging.INFO, "fleetcore.mqtt")
    broker, ca = secure_broker
    device = options(broker.url, ca_file=str(ca), username="pi-9", password="guess")
    channel.subscriber(device, "pi-9")
    assert not subscribed(caplog, "pi-9", times=1, timeout=2)
    assert (
        "the MQTT broker mqtts://127.0.0.1" in caplog.text and "refused this device" in caplog.text
    )


def test_a_broker_the_ca_did_not_sign_is_not_trusted(
    secure_broker, channel: Channel, caplog
) -> None:
    caplog.set_level(logging.INFO, "fleetcore.mqtt")
    broker, _ = secure_broker
    # The system's CAs (no ca_file) never signed the test broker's certificate.
    device = options(broker.url, username="pi-9", password="d3vice")
    channel.subscriber(device, "pi-9")
    assert not subscribed(caplog, "pi-9", times=1, timeout=2)
    assert "cannot connect to the MQTT broker mqtts://127.0.0.1" in caplog.text
