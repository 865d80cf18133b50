"""Lint problems as SARIF 2.1.0, the format code hosts show inline in reviews."""

from __future__ import annotations

from typing import Any

from fleetcore import __version__
from fleetcore.plugin.linting import Problem

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def sarif(problems: tuple[Problem, ...]) -> dict[str, Any]:
    """One run of the tool ``fleetcore lint``; a rule per problem code (or
    per linter for problems without one)."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for p in problems:
        rule = p.code or p.linter or "fleetcore"
        if rule not in rules:
            rules[rule] = {
                "id": rule,
                "shortDescription": {"text": f"{p.linter or 'fleetcore'}: {rule}"},
            }
        text = f"{p.where}: {p.message}" if p.where else p.message
        results.append(
            {
                "ruleId": rule,
                "level": p.severity,
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": p.path, "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": p.line},
                        }
                    }
                ],
            }
        )
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "fleetcore lint",
                        "version": __version__,
                        "informationUri": "https://github.com/fleetcore/fleetcore",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
