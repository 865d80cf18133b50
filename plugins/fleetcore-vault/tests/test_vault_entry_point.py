"""The vault plugin registers through its entry point and stays cheap to import."""

from __future__ import annotations

import subprocess
import sys

from fleetcore.testing.contracts import check_entry_point


def test_registered_through_its_entry_point() -> None:
    info = check_entry_point("vault", {"secrets provider": ["vault"]})
    assert info.distribution == "fleetcore-vault"


def test_importing_the_plugin_loads_no_crypto_or_http() -> None:
    code = (
        "import sys, fleetcore_vault.plugin as p\n"
        "list(p.fleetcore_register_secrets_providers())\n"
        "heavy = {'pyrage', 'cryptography', 'fleetcore_age', 'urllib.request', 'ssl',"
        " 'requests'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
