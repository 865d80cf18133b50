"""What loading the plugin needs: the names of compose files and the check of
a ``command`` option. Kept apart from :mod:`fleetcore_docker.compose` (which
re-exports them), so every start of the agent, whatever its roles, does not
import the machinery that runs Compose."""

from __future__ import annotations

from pathlib import Path

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
"""Names a role's compose file may have, in the order Compose v2 looks for them."""

AUTO = "auto"


def find_compose_file(release_dir: Path) -> Path | None:
    """The role's compose file, or None when the release has none."""
    for name in COMPOSE_FILES:
        path = release_dir / name
        if path.is_file():
            return path
    return None


def has_compose_file(release_dir: Path) -> bool:
    return find_compose_file(release_dir) is not None


def check_command(_inst: object, attr: object, value: str) -> None:
    """attrs validator for a ``command`` option: ``auto`` or a command line."""
    import shlex

    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"command is not a valid command line: {exc}") from None
    if not words:
        raise ValueError(
            f'command must be "auto", "docker compose", "docker-compose" or a path, got {value!r}'
        )
