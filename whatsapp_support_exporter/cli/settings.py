"""The command line's side of the settings: flags, --help, and the one-line messages.

A flag wins over its variable. Anything invalid stops the program before it polls, with one line
that names the setting (see ``cli.main``), because a monitoring sidecar that starts with a
half-understood configuration is worse than one that refuses to start. The flags, their
variables and help come from the table (``fleet.options``); the model is ``fleet.settings``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from pydantic import ValidationError

from whatsapp_support_exporter.fleet.options import FIELD_OF, KNOWN_VARIABLES, OPTIONS
from whatsapp_support_exporter.fleet.settings import (
    MIN_POLL_INTERVAL,
    SettingError,
    Settings,
)
from whatsapp_support_exporter.upstream.cloud.account import (
    MIN_CLOUD_INTERVAL,
    WARN_CLOUD_INTERVAL,
    CloudAccount,
)
from whatsapp_support_exporter.upstream.onprem.target import SUPPORT_PATH, Target

PROG = "whatsapp-support-exporter"
# pydantic's words for a value of the wrong shape, said as the operator can act on them.
_MESSAGES = {
    "bool_parsing": "must be true or false (also 1/0, yes/no, on/off)",
    "bool_type": "must be true or false (also 1/0, yes/no, on/off)",
}


class SettingsError(Exception):
    """Raised with a single line naming the setting at fault."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are one line (SettingsError), not a usage page."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError(f"invalid flag: {message}")


def _epilog() -> str:
    secrets = [o for o in OPTIONS.values() if o.flag is None]
    width = max(len(o.variable) for o in secrets)
    lines = [f"  {o.variable:<{width}}  {o.help}" for o in secrets]
    return "\n".join(
        [
            "commands:",
            "  check  validate the settings, poll every target and Cloud API account once and",
            "         print a table (exit 0: all answered, 1: one did not, 2: bad settings);",
            "         check --help",
            "",
            "credentials (variables only, so that they stay out of the process list):",
            *lines,
        ]
    )


def build_parser(
    prog: str = PROG,
    description: str = "Export the WhatsApp Business API On-Premises /v1/support data, and the"
    " numbers of Cloud API accounts (Graph API), to Prometheus.",
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """Flags in the style of the Go exporters; defaults stay None so variables apply."""
    parser = _Parser(
        prog=prog,
        description=textwrap.fill(
            description + " Every flag also has a WA_* environment variable (shown in"
            " brackets); the flag wins. Durations: 30s, 1m30s, 500ms or plain seconds.",
            width=79,
        ),
        epilog=_epilog() if epilog is None else epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    for option in OPTIONS.values():
        if option.flag is None:
            continue
        shown = "" if option.shown_default is None else f", default {option.shown_default}"
        if option.kind == "list":
            text = f"{option.help} [{option.variable}, comma-separated{shown}]"
            parser.add_argument(
                option.flag, action="append", dest=option.field, metavar=option.metavar, help=text
            )
            continue
        text = f"{option.help} [{option.variable}{shown}]".replace("%", "%%")
        if option.kind == "switch" and option.default:
            parser.add_argument(
                option.flag,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        elif option.kind == "switch":
            parser.add_argument(
                option.flag, dest=option.field, action="store_true", default=None, help=text
            )
        else:
            parser.add_argument(option.flag, dest=option.field, metavar=option.metavar, help=text)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def known_flags() -> list[str]:
    """Every flag the command line takes, ``--no-`` forms included."""
    flags = ["--help", "--version"]
    for option in OPTIONS.values():
        if option.flag is not None:
            flags.append(option.flag)
            if option.kind == "switch" and option.default:
                flags.append("--no-" + option.flag.removeprefix("--"))
    return flags


def parse_flags(argv: list[str], parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """The flags given, as field values; an unknown one is one line naming the nearest flag."""
    parser = parser or build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        word = unknown[0]
        name = word.split("=", 1)[0]
        if not name.startswith("-"):
            raise SettingsError(f"invalid flag: unexpected argument {word!r}")
        nearest = difflib.get_close_matches(name, known_flags(), n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else "; see --help"
        raise SettingsError(f"unknown flag {name}{hint}")
    return {k: v for k, v in vars(args).items() if v is not None and k != "version"}


def load_settings(
    argv: list[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from flags (winning) and the environment; raise SettingsError on bad input."""
    values = parse_flags([] if argv is None else argv, parser)
    values.update(overrides)
    environ = os.environ
    _refuse_conflicting_names(environ, set(values))
    try:
        settings = Settings(**values)
    except ValidationError as err:
        raise SettingsError(describe(err, environ, set(values))) from None
    if settings.poll_interval < MIN_POLL_INTERVAL:
        names = _names("poll_interval", environ, set(values))
        raise SettingsError(
            f"invalid setting {names}: must be at least {MIN_POLL_INTERVAL:g}s (the upstream"
            " is rate-limited and shared)"
        )
    if settings.cloud_interval < MIN_CLOUD_INTERVAL:
        names = _names("cloud_interval", environ, set(values))
        raise SettingsError(
            f"invalid setting {names}: must be at least {MIN_CLOUD_INTERVAL:g}s (the Graph API"
            " allows about 200 calls per hour and account)"
        )
    return settings


def _set_variables(field: str, environ: Mapping[str, str]) -> list[str]:
    """The variables of ``field`` that are set, as the environment spells them."""
    wanted = set(OPTIONS[field].variables)
    return [name for name in environ if name.upper() in wanted]


def _refuse_conflicting_names(environ: Mapping[str, str], from_flags: set[str]) -> None:
    """The new and the 0.1 name of one setting both set, to different values: which one is meant?"""
    for field in OPTIONS:
        if field in from_flags:
            continue
        names = _set_variables(field, environ)
        if len({environ[name] for name in names}) > 1:
            raise SettingsError(
                f"invalid setting {' and '.join(sorted(names))}: both are set, to different"
                " values; keep one"
            )


def _names(field: str, environ: Mapping[str, str], from_flags: set[str]) -> str:
    """How to name a setting to the operator: the variable they set (or the preferred one) and
    the flag."""
    set_names = [] if field in from_flags else _set_variables(field, environ)
    names = set_names[0].upper() if set_names else OPTIONS[field].variable
    flag = OPTIONS[field].flag
    return f"{names} ({flag})" if flag else names


# A setting that is missing, and the settings any of which would have answered it: a misspelt
# one of those is the likeliest cause (WA_CLOUD_WABA_ID set when no target is given).
_ANSWERED_BY = {
    "targets": ("targets", "cloud_waba_ids", "config_file", "demo"),
    "cloud_token": ("cloud_token", "cloud_token_file"),
}


def describe(
    err: ValidationError,
    environ: Mapping[str, str] | None = None,
    from_flags: Iterable[str] = (),
) -> str:
    """The first problem as one line: which setting, what is wrong. Never echoes a value.

    A misspelt variable that meant the setting at fault is named too (``WA_TARGET`` set when
    ``WA_TARGETS`` is missing), since it is the likeliest cause.
    """
    environ = os.environ if environ is None else environ
    errors = err.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    field = FIELD_OF.get(loc[0].upper(), loc[0]) if loc else ""
    message = _MESSAGES.get(first["type"], first["msg"].removeprefix("Value error, "))
    ctx_err = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_err, SettingError):
        field = ctx_err.setting
    if field in OPTIONS:
        names = _names(field, environ, set(from_flags))
        meant = [
            (name, OPTIONS[FIELD_OF[nearest]].variable)
            for name, nearest in misspelt_variables(environ)
            if nearest is not None and FIELD_OF[nearest] in _ANSWERED_BY.get(field, (field,))
        ]
        if meant:
            message += f" ({meant[0][0]} is set: did you mean {meant[0][1]}?)"
    else:
        names = "settings"
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"invalid setting {names}: {message}{suffix}".replace("\n", " ")


# -- warnings ---------------------------------------------------------------------------------

# The Webapp's own database variables, seen by a sidecar that shares the Webapp's environment.
_FOREIGN_PREFIXES = ("WA_DB_",)
_NAMES_SHOWN = 5


def misspelt_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each unknown ``WA_*`` variable as the environment spells it, with the nearest known one."""
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("WA_") or upper in KNOWN_VARIABLES:
            continue
        if upper.startswith(_FOREIGN_PREFIXES):
            continue
        nearest = difflib.get_close_matches(upper, sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
        found.append((name, nearest[0] if nearest else None))
    return found


def variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per unknown ``WA_*`` variable; needs no valid settings, so it can come first."""
    return [
        f"unknown variable {name} is ignored" + (f"; did you mean {near}?" if near else "")
        for name, near in misspelt_variables(environ)
    ]


def target_warnings(settings: Settings, targets: Iterable[Target] | None = None) -> list[str]:
    """One line per thing about the fleet an operator probably did not mean.

    ``targets`` is the whole fleet (``config.load_targets``); without it, the environment's.
    """
    fleet = list(settings.env_targets() if targets is None else targets)
    warnings = []
    if not settings.demo:
        bare = [t.name for t in fleet if not t.credentials.configured]
        if bare:
            warnings.append(
                f"{_count(bare, 'target')} without credentials (no API key, no login): "
                f"{_some(bare)}"
            )
    stripped = [t.name for t in fleet if t.support_path_stripped]
    if stripped:
        warnings.append(
            f"{_count(stripped, 'target URL')} ended in {SUPPORT_PATH}, which was stripped (give"
            f" the base URL): {_some(stripped)}"
        )
    return warnings


def account_warnings(accounts: Iterable[CloudAccount]) -> list[str]:
    """Cloud API accounts polled more often than the Graph API's rate limit comfortably allows."""
    fast = sorted({a.interval for a in accounts if a.interval < WARN_CLOUD_INTERVAL})
    if not fast:
        return []
    return [
        f"Cloud API interval {fast[0]:g}s is below 1m: each poll of an account costs 2 Graph API"
        " requests or more, and the Graph API allows 200 calls per hour and account"
    ]


def setting_warnings(
    settings: Settings, environ: Mapping[str, str], targets: Iterable[Target] | None = None
) -> list[str]:
    """Every warning: the variables first, then the fleet. Nothing here stops the start."""
    return variable_warnings(environ) + target_warnings(settings, targets)


def _count(names: list[str], noun: str) -> str:
    return f"{len(names)} {noun}{'s' if len(names) != 1 else ''}"


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
