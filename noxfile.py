"""One entry point for every check: ``nox`` runs lint, types and tests (as CI does).

Sessions run in the current environment (``pip install -e '.[test]'`` first): CI and a developer
check exactly the installed versions, and nothing is downloaded per session.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.default_venv_backend = "none"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's rules and its formatting, over the whole tree."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the exporter and the tests."""
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite; arguments after ``--`` go to pytest."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)
