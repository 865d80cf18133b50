"""The one family of errors a user sees.

Everything raised as a :class:`FleetcoreError` is the user's to act on: the CLI
prints its message (one line per problem) without a traceback and exits with
its ``exit_code``. Anything else is a bug and gets a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class FleetcoreError(Exception):
    """An error whose message is meant for the user."""

    exit_code = 1


class ConfigError(FleetcoreError):
    """A configuration file is wrong. Carries every problem found, one per line."""

    exit_code = 2

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        lines = [f"{self.source}: {len(self.problems)} problems"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class UnknownPluginError(ConfigError):
    """Configuration names a plugin record nobody registered."""


class PluginError(FleetcoreError):
    """A plugin misbehaved (duplicate names, a register hook that raised)."""


class FixUnavailable(FleetcoreError):
    """A drift fix that cannot act on this device (e.g. no command is
    configured for it). Raised by a fix's ``run``: its findings stay reported
    (the device shows the drift), and it does not count as a fix that did
    not hold, so it never puts the device in safe mode."""


class FetchError(FleetcoreError):
    """The fleet repo could not be reached or did not have what was asked."""


class UnsafeArchiveError(FleetcoreError):
    """A release archive or bundle holds something that must not be unpacked."""


class VerifyError(FleetcoreError):
    """A release does not match its manifest."""


class LockHeldError(FleetcoreError):
    """Another agent holds the state folder's lock."""

    exit_code = 3
