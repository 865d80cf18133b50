"""The install extras name the built-in plugin packages that exist."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("[")[0].split(";")[0].strip() for r in requirements}


def test_the_extras_name_built_in_plugins() -> None:
    built_in = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file()}
    found = extras()
    device = names(found["device"])
    assert device == {
        "fleetcore-git",
        "fleetcore-checks",
        "fleetcore-docker",
        "fleetcore-rollouts",
        "fleetcore-age",
    }
    assert "fleetcore-rollouts" in names(found["server"])
    everything = names(found["all"]) | device | names(found["server"])
    assert "fleetcore" in everything  # fleetcore[device,server,postgres]
    # Every built-in but the example plugin comes with fleetcore[all].
    assert built_in - {"fleetcore-example"} <= everything
    assert {n for n in everything if n.startswith("fleetcore-")} <= built_in
