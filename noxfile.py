"""One entry point for every check: ``nox`` runs lint, types and the tests on each Python (as CI).

Every session installs from ``uv.lock`` into its own environment under ``.nox/`` (uv's cache
makes that seconds), so CI, a developer and every Python check the same versions. The Pythons are
the classifiers of ``pyproject.toml``; one not installed here is skipped (an error under CI=true).
"""

from __future__ import annotations

import nox

PROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS: list[str] = nox.project.python_versions(PROJECT)
RUNTIME = "requirements/runtime.txt"
# What the image installs: the locked runtime packages, with hashes, no tooling.
EXPORT = (
    *("export", "--frozen", "--no-dev", "--no-emit-project", "--no-header"),
    *("--format", "requirements-txt"),
)

nox.options.sessions = ["lint", "types", "tests"]
nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
# Only interpreters already on the machine (CI reaches package registries only).
nox.options.download_python = "never"


def sync(session: nox.Session, *selection: str) -> None:
    """Make the session's environment exactly the locked packages of ``selection``."""
    env = session.virtualenv.location
    session.run_install(
        *("uv", "sync", "--locked", "--no-default-groups", f"--python={env}", *selection),
        env={"UV_PROJECT_ENVIRONMENT": env},
    )


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff's rules and formatting over the whole tree; the lock in step with pyproject.toml and
    the image's requirements in step with the lock."""
    sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("uv", "lock", "--check", "--offline", external=True)
    exported = session.run("uv", *EXPORT, "--quiet", external=True, silent=True)
    with open(RUNTIME) as f:
        if f.read() != exported:
            session.error(f"{RUNTIME} is not the lock's export: run `nox -s lock`")


@nox.session(python=PYTHONS[0])
def types(session: nox.Session) -> None:
    """mypy --strict on the packages, the tests, the dashboard generator and scripts/."""
    sync(session, "--extra", "test", "--group", "dev")  # dev: lint and the drawing scripts
    session.run("mypy")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite; arguments after ``--`` go to pytest (``-m "not slow"``: seconds)."""
    sync(session, "--extra", "test")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """Refresh the lock: newest versions within pyproject.toml's ranges (``-- pkg`` upgrades
    only pkg), then the image's requirements exported from it."""
    upgrade = [f"--upgrade-package={name}" for name in session.posargs] or ["--upgrade"]
    session.run("uv", "lock", *upgrade)
    session.run("uv", *EXPORT, f"--output-file={RUNTIME}")
