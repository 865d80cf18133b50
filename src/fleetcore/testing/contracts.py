"""Conformance checks a plugin package runs against its own records.

Each function takes a record your plugin registers, checks what the core
relies on, and raises :class:`AssertionError` naming the rule that was broken.
They do not test what your plugin does (write tests for that); they test
that it keeps the contract::

    from fleetcore.testing.contracts import check_entry_point, check_rollout_strategy
    from fleetcore_rollouts import percentage

    def test_percentage_keeps_the_contract():
        (record,) = percentage.fleetcore_register_rollout_strategies()
        check_rollout_strategy(record, [{"percent": p} for p in (0, 1, 5, 25, 100)])

    def test_registered_through_its_entry_point():
        check_entry_point("percentage", {"rollout strategy": ["percentage"]})

Options are given as the TOML table a user would write (a ``dict``); the
kit structures them with the record's ``config_type`` exactly as the core
does, so an example that the config loader would refuse fails here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

import attrs

from fleetcore.config.agent import SEGMENTS
from fleetcore.config.convert import structure
from fleetcore.errors import ConfigError
from fleetcore.plugin.manager import PluginInfo, PluginManager
from fleetcore.plugin.types import Activator, Check, DeviceInfo, RolloutStrategy

__all__ = [
    "check_activator_record",
    "check_check_record",
    "check_entry_point",
    "check_rollout_strategy",
    "check_summary",
    "sample_commits",
    "sample_devices",
    "structure_options",
]

UNKNOWN_KEY = "no-such-option-in-any-plugin"


def _fail(message: str) -> NoReturn:
    # Not `assert`: the kit must keep working under `python -O` and outside
    # pytest's assertion rewriting.
    raise AssertionError(message)


def sample_devices(count: int = 300) -> list[DeviceInfo]:
    """``count`` devices, their segments taken in turn from canary, early, general."""
    return [
        DeviceInfo(device_id=f"device-{i:04d}", role="web", segment=SEGMENTS[i % len(SEGMENTS)])
        for i in range(count)
    ]


def sample_commits(count: int = 4) -> list[str]:
    """``count`` commit ids that look like git's (40 hex digits)."""
    return [
        hashlib.sha1(f"commit {i}".encode(), usedforsecurity=False).hexdigest()
        for i in range(count)
    ]


def structure_options(record: Any, example: Mapping[str, Any] | Any) -> Any:
    """Structure ``example`` (a TOML table as a dict) with ``record.config_type``.

    Checks that ``config_type`` is a frozen attrs class, that it takes the
    example (and an empty table when every key has a default), and that it
    refuses an unknown key (a typo in a role must be an error, not ignored).
    An object that already is a ``config_type`` is returned as it is.
    Returns the options object.
    """
    config_type = record.config_type
    if not (isinstance(config_type, type) and attrs.has(config_type)):
        _fail(f"{record.name}: config_type must be an attrs class, got {config_type!r}")
    if not isinstance(example, Mapping):
        if not isinstance(example, config_type):
            _fail(
                f"{record.name}: example {example!r} is neither a dict nor a {config_type.__name__}"
            )
        return example
    where = f"{record.name} options"
    if all(f.default is not attrs.NOTHING for f in attrs.fields(config_type)):
        # Every key is optional, so a role may leave the table out.
        try:
            structure({}, config_type, source=where)
        except ConfigError as exc:
            raise AssertionError(f"{record.name}: the default options are refused: {exc}") from None
    try:
        options = structure(dict(example), config_type, source=where)
    except ConfigError as exc:
        raise AssertionError(f"{record.name}: the example options are refused: {exc}") from None
    try:
        structure({**example, UNKNOWN_KEY: 1}, config_type, source=where)
    except ConfigError:
        pass
    else:
        _fail(
            f"{record.name}: config_type accepts an unknown key; options classes must "
            "be attrs classes structured by fleetcore.config.convert"
        )
    fields = attrs.fields(config_type)
    if fields:
        try:
            setattr(options, fields[0].name, getattr(options, fields[0].name))
        except attrs.exceptions.FrozenInstanceError:
            pass
        else:
            _fail(
                f"{record.name}: config_type {config_type.__name__} must be frozen "
                "(@attrs.frozen): one options object is shared by every caller"
            )
    return options


def check_summary(record: Any) -> None:
    """Check that ``record.name`` is a word like ``git-archive`` and that
    ``record.summary`` is one short, non-empty line."""
    name = record.name
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        _fail(f"record names are words like 'git-archive', got {name!r}")
    summary = record.summary
    if not isinstance(summary, str) or not summary.strip():
        _fail(f"{record.name}: summary must say in a few words what it does")
    if "\n" in summary or len(summary) > 100:
        _fail(
            f"{record.name}: summary must be one short line (`fleetcore plugins` "
            f"shows it in a table), got {summary!r}"
        )


def check_rollout_strategy(
    record: RolloutStrategy,
    steps: Sequence[Mapping[str, Any] | Any],
    *,
    devices: Iterable[DeviceInfo] | None = None,
    commits: Iterable[str] | None = None,
) -> list[int]:
    """Check a rollout strategy against the contract of
    :mod:`fleetcore.rollout.interface`.

    ``steps`` are the strategy's options at successive steps of one rollout,
    in order (``{"percent": 5}``, then ``{"percent": 25}``...; or segments
    being promoted). For every device of ``devices`` and commit of
    ``commits`` (default: :func:`sample_devices` and :func:`sample_commits`)
    it checks that:

    - every step's options structure with ``config_type``;
    - ``eligible`` returns a ``bool``;
    - the answer is deterministic: the same twice from one strategy object,
      and the same from a second object made from the same options and asked
      in the opposite order (the server and the agent must agree);
    - it is monotone: a device eligible at one step is eligible at every
      later step, so raising a rollout never moves a device back.

    Returns, per step, how many (device, commit) pairs were eligible, so a
    test can also check that the steps did change something.
    """
    if not isinstance(record, RolloutStrategy):
        _fail(f"expected a RolloutStrategy record, got {record!r}")
    check_summary(record)
    if not steps:
        _fail(f"{record.name}: give at least one step of options")
    devices = list(devices if devices is not None else sample_devices())
    commits = list(commits if commits is not None else sample_commits())
    pairs = [(d, c) for c in commits for d in devices]

    answers: list[list[bool]] = []
    for i, step in enumerate(steps):
        options = structure_options(record, step)
        first, second = record.factory(options), record.factory(options)
        got = []
        for device, commit in pairs:
            answer = first.eligible(device, commit)
            if type(answer) is not bool:
                _fail(f"{record.name}: eligible() must return True or False, got {answer!r}")
            if first.eligible(device, commit) is not answer:
                _fail(
                    f"{record.name}: not deterministic: {device.device_id} and "
                    f"{commit[:12]} at step {i} ({step!r}) got two answers"
                )
            got.append(answer)
        for j in reversed(range(len(pairs))):
            device, commit = pairs[j]
            if second.eligible(device, commit) is not got[j]:
                _fail(
                    f"{record.name}: not deterministic: two strategies made from "
                    f"{step!r} disagree about {device.device_id} and {commit[:12]}"
                )
        answers.append(got)

    for i in range(1, len(answers)):
        for j, (before, after) in enumerate(zip(answers[i - 1], answers[i], strict=True)):
            if before and not after:
                device, commit = pairs[j]
                _fail(
                    f"{record.name}: not monotone: {device.device_id} "
                    f"(segment {device.segment}) may take {commit[:12]} at step {i - 1} "
                    f"({steps[i - 1]!r}) but not at step {i} ({steps[i]!r})"
                )
    return [sum(got) for got in answers]


def check_check_record(record: Check, *, example: Mapping[str, Any] | Any = None) -> Any:
    """Check the shape of a :class:`~fleetcore.plugin.types.Check` record.

    ``example`` is a table of the check's options as a role would write it
    (default: an empty table, which must then be valid). Whether ``run``
    works is for your own tests, and a ``run`` that raises is turned into a
    failed finding by the core's runner: this only checks what the runner
    needs to call the check at all. Returns the structured options.
    """
    if not isinstance(record, Check):
        _fail(f"expected a Check record, got {record!r}")
    check_summary(record)
    if not callable(record.run):
        _fail(f"{record.name}: run must be callable")
    if record.applies is not None and not callable(record.applies):
        _fail(f"{record.name}: applies must be callable or None")
    if not isinstance(record.default, bool):
        _fail(f"{record.name}: default must be True or False")
    return structure_options(record, {} if example is None else example)


def check_activator_record(record: Activator, *, example: Mapping[str, Any] | Any = None) -> Any:
    """Check the shape of an :class:`~fleetcore.plugin.types.Activator`
    record and that ``factory`` makes an object with ``start`` and ``stop``
    from the ``example`` options (default: an empty table). Returns that
    object; nothing is started."""
    if not isinstance(record, Activator):
        _fail(f"expected an Activator record, got {record!r}")
    check_summary(record)
    if record.detect is not None and not callable(record.detect):
        _fail(f"{record.name}: detect must be callable or None")
    if type(record.priority) is not int:
        _fail(f"{record.name}: priority must be a whole number")
    options = structure_options(record, {} if example is None else example)
    impl = record.factory(options)
    for method in ("start", "stop"):
        if not callable(getattr(impl, method, None)):
            _fail(f"{record.name}: the activator made by factory() has no {method}() method")
    return impl


def check_entry_point(plugin: str, provides: Mapping[str, Iterable[str]]) -> PluginInfo:
    """Check that the installed entry point ``plugin`` of the ``fleetcore``
    group loads and registers the records ``provides`` names, by kind
    (``{"health check": ["tcp-port"]}``; kinds are the keys of
    :data:`fleetcore.plugin.hookspecs.REGISTER_HOOKS`).

    It uses a real :class:`~fleetcore.plugin.manager.PluginManager`, as
    ``fleetcore plugins`` does, so the package must be installed (``pip
    install -e .``). Returns the plugin's
    :class:`~fleetcore.plugin.manager.PluginInfo`.
    """
    infos = {info.name: info for info in PluginManager().plugins()}
    info = infos.get(plugin)
    if info is None:
        _fail(
            f"no plugin {plugin!r} among the installed entry points "
            f"({', '.join(sorted(infos)) or 'none'}); is the package installed?"
        )
    if info.status != "active":
        _fail(f"plugin {plugin!r} is {info.status}: {info.error}")
    if info.distribution is None:
        _fail(f"plugin {plugin!r} was not loaded from an entry point")
    for kind, names in provides.items():
        missing = set(names) - set(info.provides.get(kind, ()))
        if missing:
            _fail(
                f"plugin {plugin!r} does not provide {kind} {', '.join(sorted(missing))}; "
                f"it provides {dict(info.provides)}"
            )
    return info
