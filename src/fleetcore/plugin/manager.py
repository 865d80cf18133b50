"""Finding, loading and asking plugins.

Plugins come from the ``fleetcore`` entry-point group (built-ins included:
they are packages like any other) and from :meth:`PluginManager.register`
(tests, embedding applications). Entry points load one by one, so one broken
package is shown as ``failed`` and the rest keep working.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import pluggy
from attrs import field, frozen

from fleetcore.config.convert import structure
from fleetcore.errors import PluginError, UnknownPluginError
from fleetcore.plugin import discovery, hookspecs

if TYPE_CHECKING:
    from fleetcore.model import CheckKind
    from fleetcore.plugin.linting import Linter
    from fleetcore.plugin.types import (
        Activator,
        AlertChannel,
        Check,
        DriftFix,
        EventChannel,
        Fetcher,
        RolloutStrategy,
        SecretsProvider,
    )

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fleetcore"
DISABLE_ENV = "FLEETCORE_DISABLE_PLUGINS"
"""Comma-separated plugin names not to load, on top of the config's list."""

R = TypeVar("R")

CheckRecordKind = Literal["verify check", "validate check", "health check", "drift check"]
RecordKind = Literal[
    "fetcher",
    "activator",
    "secrets provider",
    "rollout strategy",
    "event channel",
    "alert channel",
    "verify check",
    "validate check",
    "health check",
    "drift check",
    "drift fix",
    "linter",
    "resource probe",
]
"""The kinds of named record, keys of :data:`hookspecs.REGISTER_HOOKS`."""


@frozen(kw_only=True)
class PluginInfo:
    """What ``fleetcore plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = "active"
    """``active``, ``disabled`` or ``failed``."""
    error: str | None = None
    hooks: tuple[str, ...] = ()
    provides: Mapping[str, tuple[str, ...]] = field(factory=dict)
    """Kind of record (``fetcher``, ``health check``...) -> names."""


@frozen
class Registered(Generic[R]):
    record: R
    plugin: str


class Registry(Generic[R]):
    """The records of one kind, by name. Built once, on first use."""

    def __init__(self, kind: str, entries: dict[str, Registered[R]]) -> None:
        self.kind = kind
        self._entries = entries

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[R]:
        return iter(entry.record for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def provider(self, name: str) -> str:
        return self._entries[name].plugin

    def get(self, name: str, *, where: str, source: str) -> R:
        """The record called ``name``; else an error at key ``where`` of
        ``source`` that lists what is installed."""
        try:
            return self._entries[name].record
        except KeyError:
            installed = ", ".join(self.names()) or "none"
            raise UnknownPluginError(
                source,
                [
                    f"unknown {self.kind} {name!r} @ {where}; installed: {installed}; "
                    "see `fleetcore plugins`"
                ],
            ) from None


class PluginManager:
    """The plugins of one process and the records they registered."""

    def __init__(self, *, disabled: Iterable[str] = (), entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        env = os.environ.get(DISABLE_ENV, "")
        self.disabled = frozenset(disabled) | {n.strip() for n in env.split(",") if n.strip()}
        self._infos: dict[str, PluginInfo] = {}
        self._entry_points: dict[str, discovery.EntryPoint] = {}
        """Where each loaded plugin came from; its distribution's name and
        version are read only when ``plugins()`` shows them."""
        self._registries: dict[str, Registry[Any]] = {}
        self._failed_registrations: dict[str, str] = {}
        if entry_points:
            self.load_entry_points()

    # -- loading ---------------------------------------------------------------

    def load_entry_points(self) -> None:
        # Not importlib.metadata: see fleetcore.plugin.discovery (the agent's start).
        for ep in sorted(discovery.entry_points(ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in self._infos:
                # Two packages claiming one plugin name: the first wins, both are shown.
                first = self._entry_points[ep.name].distribution
                self._infos[f"{ep.name} ({ep.distribution})"] = PluginInfo(
                    name=ep.name,
                    status="failed",
                    error=f"plugin name {ep.name!r} is already used by {first}",
                )
                self._entry_points[f"{ep.name} ({ep.distribution})"] = ep
                continue
            self._entry_points[ep.name] = ep
            if ep.name in self.disabled:
                self._infos[ep.name] = PluginInfo(name=ep.name, status="disabled")
                continue
            try:
                plugin = ep.load()
                self._pm.register(plugin, name=ep.name)
            except Exception as exc:
                log.warning("plugin %s failed to load: %s: %s", ep.name, type(exc).__name__, exc)
                self._infos[ep.name] = PluginInfo(
                    name=ep.name, status="failed", error=f"{type(exc).__name__}: {exc}"
                )
                continue
            self._infos[ep.name] = PluginInfo(name=ep.name)
        # A hook implementation whose name matches no spec is a typo that
        # would otherwise never be called.
        self._check_pending()

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module directly (tests, embedding)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.disabled:
            self._infos[name] = PluginInfo(name=name, status="disabled")
            return name
        registered = self._pm.register(plugin, name=name)
        assert registered is not None
        self._infos[name] = PluginInfo(name=name)
        self._registries.clear()
        self._check_pending()
        return registered

    def _check_pending(self) -> None:
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from None

    # -- records -----------------------------------------------------------------

    def registry(self, kind: str) -> Registry[Any]:
        """All records of ``kind`` (a key of :data:`hookspecs.REGISTER_HOOKS`).
        The typed shortcuts below say which record type each kind holds."""
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    # Typed shortcuts, one per kind of record.

    def fetchers(self) -> Registry[Fetcher]:
        return self.registry("fetcher")

    def activators(self) -> Registry[Activator]:
        return self.registry("activator")

    def secrets_providers(self) -> Registry[SecretsProvider]:
        return self.registry("secrets provider")

    def rollout_strategies(self) -> Registry[RolloutStrategy]:
        return self.registry("rollout strategy")

    def event_channels(self) -> Registry[EventChannel]:
        return self.registry("event channel")

    def alert_channels(self) -> Registry[AlertChannel]:
        return self.registry("alert channel")

    def checks(self, kind: CheckKind) -> Registry[Check]:
        """The ``verify``, ``validate``, ``health`` or ``drift`` checks."""
        return self.registry(f"{kind} check")

    def drift_fixes(self) -> Registry[DriftFix]:
        return self.registry("drift fix")

    def linters(self) -> Registry[Linter]:
        return self.registry("linter")

    def _collect(self, kind: str) -> Registry[Any]:
        hook = getattr(self._pm.hook, hookspecs.REGISTER_HOOKS[kind])
        entries: dict[str, Registered[Any]] = {}
        # Call each implementation on its own: one plugin's broken register
        # hook must not hide every other plugin's records.
        for impl in hook.get_hookimpls():
            try:
                result = impl.function()
                records = list(result) if result is not None else []
            except Exception as exc:
                message = f"{impl.plugin_name}: {hookspecs.REGISTER_HOOKS[kind]} raised {exc!r}"
                log.warning("%s", message)
                self._failed_registrations[impl.plugin_name] = message
                continue
            for record in records:
                if record.name in entries:
                    raise PluginError(
                        f"{kind} {record.name!r} is registered by both "
                        f"{entries[record.name].plugin} and {impl.plugin_name}; "
                        f"disable one of them (`{DISABLE_ENV}` or [plugins] disable)"
                    )
                entries[record.name] = Registered(record, impl.plugin_name)
        return Registry(kind, entries)

    def options(
        self, record: Any, data: Mapping[str, Any] | None, *, where: str, source: str
    ) -> Any:
        """Structure ``data`` into the record's ``config_type``; errors name ``where``."""
        return structure(dict(data or {}), record.config_type, source=source, root=where)

    # -- notifications -----------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook on every plugin; a raising observer is logged."""
        hook = getattr(self._pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)

    # -- listing -------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every plugin known to this process, with its hooks and records."""
        provides: dict[str, dict[str, list[str]]] = {}
        for kind in hookspecs.REGISTER_HOOKS:
            registry = self.registry(kind)
            for name in registry.names():
                provides.setdefault(registry.provider(name), {}).setdefault(kind, []).append(name)
        out = []
        for name, info in sorted(self._infos.items()):
            plugin = self._pm.get_plugin(name)
            hooks: tuple[str, ...] = ()
            if plugin is not None:
                hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(plugin) or ()))
            status, error = info.status, info.error
            if name in self._failed_registrations:
                status, error = "failed", self._failed_registrations[name]
            ep = self._entry_points.get(name)
            out.append(
                PluginInfo(
                    name=info.name,
                    distribution=ep.distribution if ep is not None else info.distribution,
                    version=ep.version if ep is not None else info.version,
                    status=status,
                    error=error,
                    hooks=hooks,
                    provides={k: tuple(v) for k, v in provides.get(name, {}).items()},
                )
            )
        return out

    @property
    def hook(self) -> Any:
        return self._pm.hook
