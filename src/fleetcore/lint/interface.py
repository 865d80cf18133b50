"""What a lint plugin implements: a check of the fleet repository itself.

Devices run a role's ``validate.sh`` and validate checks after they fetched a
release; by then a broken commit has already reached them. Linters run
earlier: on a developer's machine (``fleetcore lint``, the pre-commit hook)
and in the fleet repository's CI (``fleetcore lint --init-ci``), on the
checkout, with no device around.

A linter is a :class:`Linter` record with a ``run(ctx)`` function. ``ctx`` is
a :class:`LintContext`: the checkout's root (``ctx.repo``), the files to look
at (``ctx.files``, narrowed to one role by ``--role``) and ``ctx.select``
to pick some by name. ``run`` returns or yields :class:`Problem` values; each
names a file relative to the root and a line, so that editors, pre-commit and
code hosts (SARIF) can point at it. Give ``where`` (a key path, a rule) when
you know it, ``severity="warning"`` for what should not fail a push, and a
``fix`` for what is safe to repair without asking (``--fix``).

A complete plugin that wants a ``README.md`` in every role::

    from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl

    def role_readmes(ctx: LintContext):
        roles = {f.split("/")[1] for f in ctx.select("roles/*/role.toml")}
        for role in sorted(roles):
            if f"roles/{role}/README.md" not in ctx.files:
                yield Problem(
                    path=f"roles/{role}/role.toml",
                    message="the role has no README.md",
                    severity="warning",
                    code="role-readme",
                )

    @hookimpl
    def fleetcore_register_linters():
        yield Linter(name="role-readme", summary="Every role has a README", run=role_readmes)

and its entry point::

    [project.entry-points.fleetcore]
    role-readme = "my_package.lint"

Rules of the road:

- Never change files in ``run``; put repairs in ``Problem.fix`` (called only
  with ``--fix``, after every linter ran).
- A linter that needs a tool that is not installed (ShellCheck, a Compose
  binary) says nothing about what it cannot check; fleetcore's CI workflows
  install the tools.
- Never print a secret you found: name the file, the line and the kind.
- An exception becomes a problem of its own (``linter NAME raised ...``); the
  other linters still run.
"""

from fleetcore.plugin import hookimpl
from fleetcore.plugin.linting import LintContext, Linter, Problem, Severity

__all__ = ["LintContext", "Linter", "Problem", "Severity", "hookimpl"]
