"""Linter ``secrets``: secrets committed in clear text.

A fleet repository is read by every device and often by more people than
should hold its credentials; secrets belong in ``*.age`` files or a secrets
provider. Reported, by file and line, never with the value:

- private keys (PEM, OpenSSH, PGP blocks, age identities) in any file;
- access tokens with a recognisable shape (cloud, forge and chat tokens);
- in env files and compose ``environment``: values of password-, token- or
  key-like names, and any long value with the randomness of a generated
  secret (Shannon entropy, the measure detect-secrets uses).

``*.age`` files are encrypted, and ``keys/*.pub`` are public keys: both
are fine. A line that ends with ``# fleetcore: not-a-secret`` is skipped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl
from fleetcore_lint.compose import COMPOSE_FILES
from fleetcore_lint.yamlfile import YamlError, load

ALLOW = "fleetcore: not-a-secret"
_MAX_BYTES = 2_000_000

TOKENS = {
    "private-key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "age-identity": re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{50,}"),
    "aws-access-key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github-token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})"),
    "gitlab-token": re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    "slack-token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "stripe-key": re.compile(r"\b[sr]k_live_[A-Za-z0-9]{20,}"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
}
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
# Placeholders people commit on purpose: empty, references, obvious dummies.
_PLACEHOLDER = re.compile(
    r"^(?:|\$\{?[A-Za-z_].*|<.*>|changeme|change-me|example|dummy|xxx+|\*+|none|null|false|true)$",
    re.I,
)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def suspicious_value(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a committed secret, or None."""
    value = value.strip().strip("\"'")
    if _PLACEHOLDER.match(value):
        return None
    if _SECRET_NAME.search(name) and len(value) >= 6:
        return f"{name} has a value in clear text"
    if len(value) >= 20 and " " not in value and entropy(value) >= 4.0:
        return f"{name} has a high-entropy value (a generated secret?)"
    return None


def _exempt(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".age") or (name.startswith("keys/") and base.endswith(".pub"))


def _is_env_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base == ".env" or base.endswith(".env") or base.startswith(".env.")


def _tokens(name: str, lines: list[str]) -> Iterator[Problem]:
    for number, line in enumerate(lines, 1):
        if ALLOW in line:
            continue
        for kind, pattern in TOKENS.items():
            if pattern.search(line):
                yield Problem(
                    path=name,
                    line=number,
                    where=kind,
                    message=f"a {kind.replace('-', ' ')} in clear text: encrypt it "
                    "(`fleetcore secrets encrypt`) or use a secrets provider",
                    code=f"secret-{kind}",
                )
                break


def _env_file(name: str, lines: list[str]) -> Iterator[Problem]:
    for number, line in enumerate(lines, 1):
        found = _ENV_LINE.match(line)
        if not found or line.lstrip().startswith("#") or ALLOW in line:
            continue
        why = suspicious_value(found.group(1), found.group(2).split(" #")[0])
        if why:
            yield Problem(
                path=name, line=number, where=found.group(1), message=why, code="secret-env"
            )


def _compose_environment(name: str, text: str) -> Iterator[Problem]:
    try:
        doc = load(text)
    except YamlError:
        return
    services = doc.data.get("services") if isinstance(doc.data, dict) else None
    for service, spec in (services or {}).items():
        env = spec.get("environment") if isinstance(spec, dict) else None
        pairs: list[tuple[str | int, str, str]] = []
        if isinstance(env, dict):
            pairs = [(k, str(k), "" if v is None else str(v)) for k, v in env.items()]
        elif isinstance(env, list):
            pairs = [(i, *str(item).partition("=")[::2]) for i, item in enumerate(env)]
        for step, key, value in pairs:
            why = suspicious_value(key, value)
            if why:
                yield Problem(
                    path=name,
                    line=doc.line(["services", service, "environment", step]),
                    where=f"services.{service}.environment.{key}",
                    message=why,
                    code="secret-env",
                )


def check_secrets(ctx: LintContext) -> Iterator[Problem]:
    compose = set(ctx.select(*COMPOSE_FILES))
    for name in ctx.files:
        path = ctx.path(name)
        if _exempt(name) or path.stat().st_size > _MAX_BYTES:
            continue
        raw = path.read_bytes()
        if b"\0" in raw[:8192]:
            continue  # binary
        text = raw.decode("utf-8", errors="replace")
        lines = text.splitlines()
        yield from _tokens(name, lines)
        if _is_env_file(name):
            yield from _env_file(name, lines)
        if name in compose:
            yield from _compose_environment(name, text)


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(
        name="secrets",
        summary="Private keys, tokens and high-entropy values committed in clear text",
        run=check_secrets,
    )
