"""Conformance kits: the tests the core relies on, for every kind of plugin.

A plugin package gets them for free in its own test suite. Subclass the kit
of your plugin's kind in a test module (the class name must start with
``Test``) and supply, as pytest fixtures, what the kit cannot guess: the
record, its options, and a small scenario (a repository, a release folder, a
backend holding the secrets)::

    # tests/test_conformance.py of a rollout-strategy plugin
    import pytest
    from fleetcore.testing.conformance.rollout import RolloutStrategyKit
    from my_plugin import plugin

    class TestSiteStrategy(RolloutStrategyKit):
        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_rollout_strategies()
            return record

        @pytest.fixture
        def steps(self):
            return [{"sites": []}, {"sites": ["ams"]}, {"sites": ["ams", "fra"]}]

pytest then runs every ``test_*`` method of the kit against your plugin.

One module per kind:

=============================  ===============================  ==========================
kind                           module                           kit
=============================  ===============================  ==========================
fetcher                        :mod:`.fetcher`                  ``FetcherKit``
activator                      :mod:`.activator`                ``ActivatorKit``
verify/validate/health/drift   :mod:`.checks`                   ``CheckKit``
drift fix                      :mod:`.drift`                    ``DriftFixKit``
secrets provider               :mod:`.secrets`                  ``SecretsProviderKit``
rollout strategy               :mod:`.rollout`                  ``RolloutStrategyKit``
event channel                  :mod:`.channels`                 ``EventChannelKit``
alert channel                  :mod:`.alerts`                   ``AlertChannelKit``
=============================  ===============================  ==========================

The kits check the contract (what the agent and the server rely on), never
what a plugin is for: write your own tests for that. A broken rule fails
with an :class:`AssertionError` that names it. The record-level functions of
:mod:`fleetcore.testing.contracts` are used by the kits and stay usable on
their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from fleetcore.plugin.types import CheckContext, CheckKind, DeviceInfo
from fleetcore.testing.contracts import sample_commits, structure_options

__all__ = [
    "COMMIT",
    "DEVICE",
    "OTHER_DEVICE",
    "check_context",
    "expect_error",
    "fleetcore_env",
    "missing_fixture",
    "tree_state",
]

DEVICE = DeviceInfo(device_id="kit-device-1", role="web", segment="general")
"""The device the kits act for."""
OTHER_DEVICE = DeviceInfo(device_id="kit-device-2", role="web", segment="general")
"""A second device, for what must reach one device and not another."""
COMMIT = sample_commits(1)[0]
"""A commit id the kits use where no repository is involved."""


def fail(message: str) -> NoReturn:
    # Not `assert`: the kits must keep working under `python -O` and outside
    # pytest's assertion rewriting.
    raise AssertionError(message)


def missing_fixture(kit: str, name: str, what: str) -> NoReturn:
    """Fail a test whose kit subclass did not define the fixture ``name``."""
    fail(f"{kit}: define the fixture `{name}` in your subclass: {what}")


def fleetcore_env(
    release_dir: Path, device: DeviceInfo = DEVICE, commit: str = COMMIT
) -> dict[str, str]:
    """The ``FLEETCORE_*`` variables the agent gives activators and checks."""
    return {
        "FLEETCORE_RELEASE_DIR": str(release_dir),
        "FLEETCORE_COMMIT": commit,
        "FLEETCORE_ROLE": device.role,
        "FLEETCORE_DEVICE_ID": device.device_id,
    }


def check_context(
    kind: CheckKind,
    release_dir: Path,
    *,
    record: Any = None,
    options: Mapping[str, Any] | Any = None,
    device: DeviceInfo = DEVICE,
    commit: str = COMMIT,
    **changes: Any,
) -> CheckContext:
    """A :class:`~fleetcore.plugin.types.CheckContext` as the agent builds it.

    ``options`` is the check's (or fix's) table as a role would write it; with
    ``record`` it is structured with the record's ``config_type`` (and checked,
    see :func:`fleetcore.testing.contracts.structure_options`). ``changes``
    set any other field (``manifest``, ``state_dir``, ``deep``, ``repair``...).
    """
    if record is not None:
        options = structure_options(record, {} if options is None else options)
    values: dict[str, Any] = {
        "kind": kind,
        "device": device,
        "release_dir": release_dir,
        "commit": commit,
        "manifest": None,
        "options": options,
        "log": logging.getLogger(f"fleetcore.kit.{kind}"),
        "env": fleetcore_env(release_dir, device, commit),
        "project": f"fleetcore-{device.role}",
    }
    values.update(changes)
    return CheckContext(**values)


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` with its type, mode, size, modification time
    and content digest (or link target): equal states mean nothing changed."""
    state: dict[str, tuple[Any, ...]] = {}
    if not root.exists():
        return state
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return state


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The paths that differ between two :func:`tree_state` results."""
    return sorted(p for p in {*before, *after} if before.get(p) != after.get(p))


class expect_error:
    """Like ``pytest.raises``, with a message naming the record and the rule::

    with expect_error(FetchError, record, "fetch() of an unknown commit"):
        source.fetch(...)
    """

    def __init__(self, expected: type[BaseException], record: Any, what: str) -> None:
        self.expected, self.record, self.what = expected, record, what
        self.value: BaseException | None = None

    def __enter__(self) -> expect_error:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        if value is None:
            fail(f"{self.record.name}: {self.what} must raise {self.expected.__name__}")
        if not isinstance(value, Exception):
            return False  # KeyboardInterrupt and the like go on
        if not isinstance(value, self.expected):
            raise AssertionError(
                f"{self.record.name}: {self.what} must raise {self.expected.__name__}, "
                f"not {type(value).__name__}: {value}"
            ) from value
        self.value = value
        return True
