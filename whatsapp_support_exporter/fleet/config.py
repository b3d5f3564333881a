"""Which targets there are: WA_TARGETS plus the configuration file and its target files,
validated whole.

The configuration file (YAML) names credential sets (``auths``), lists targets with their
``auth``, ``tls_config`` and ``labels``, and globs ``target_files`` in Prometheus' file_sd shape
(``[{targets: [...], labels: {...}}]``, YAML or JSON). Anything wrong is one ``ConfigError``
line naming the file, the place in it and the problem, and nothing of the fleet is used: a
reload with a bad file keeps the running fleet. Secrets never appear in a message.
"""

from __future__ import annotations

import difflib
import functools
import glob
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from whatsapp_support_exporter.fleet.cloud_config import (
    CloudConfigError,
    CloudSection,
    load_accounts,
)
from whatsapp_support_exporter.fleet.settings import Settings
from whatsapp_support_exporter.upstream.cloud.account import CloudAccount
from whatsapp_support_exporter.upstream.onprem.target import (
    ApiKey,
    ApiKeyFile,
    Credentials,
    PasswordFile,
    Target,
    TLSOptions,
    check_ca_file,
    duplicate_hint,
    file_problem,
    normalize_url,
    resolved,
)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# `target` is the exporter's own label; `auth` in a target file picks the credentials.
_RESERVED_LABELS = frozenset({"target"})
# Prometheus sets these on every scrape: a target's own would be renamed exported_job.
_PROMETHEUS_LABELS = frozenset({"job", "instance"})
_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


class ConfigError(Exception):
    """One line: ``<file>: <place>: <problem>`` (no secret, no file content)."""


# -- YAML that refuses duplicate keys ---------------------------------------------------------


@functools.cache
def _yaml_loader() -> Any:
    """The YAML loader, made on first use: a fleet given only by WA_TARGETS (a sidecar) never
    imports YAML. A duplicated key silently wins in plain YAML; here it is an error (it hides a
    mistake)."""
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # PyYAML wheels ship libyaml

    def construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'duplicate key "{key_node.value}"', key_node.start_mark
                    )
                seen.add(key_node.value)
        loader.flatten_mapping(node)
        return dict(loader.construct_pairs(node))

    loader: Any = type("_Loader", (base,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return loader


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: {file_problem(err)}") from None


def _parse(path: Path, raw: bytes) -> Any:
    """YAML, or JSON for a ``.json`` file (much faster for a generated fleet)."""
    if path.suffix == ".json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
    import yaml

    try:
        return yaml.load(raw, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}{err.problem or 'not valid YAML'}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None


# -- the file's schema ------------------------------------------------------------------------


def _check_labels(labels: dict[str, str], reserved: frozenset[str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(
                f'"{name}" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)'
            )
        if name in _PROMETHEUS_LABELS:
            raise ValueError(
                f'"{name}" is set by Prometheus on every scrape (yours would become'
                f" exported_{name}); choose another name"
            )
        if name in reserved:
            raise ValueError(f'"{name}" cannot be a label here')
    return labels


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Auth(_Model):
    api_key: ApiKey | None = None
    api_key_file: ApiKeyFile | None = None
    username: StrictStr | None = Field(None, min_length=1)
    password: SecretStr | None = None
    password_file: PasswordFile | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _Auth:
        problem = self.credentials().problem(str)
        if problem is not None:
            raise ValueError(problem[1])
        if not self.credentials().configured:
            raise ValueError("names no credential (api_key, api_key_file or username)")
        return self

    def credentials(self) -> Credentials:
        return Credentials.of(self)


class _TLSConfig(_Model):
    ca_file: Path | None = None
    insecure_skip_verify: StrictBool | None = None

    @field_validator("ca_file")
    @classmethod
    def _usable_bundle(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        path = resolved(path, info)
        checked: set[Path] = (info.context or {}).setdefault("checked_ca_files", set())
        if path not in checked:  # a fleet shares a few bundles; load each once
            check_ca_file(path)
            checked.add(path)
        return path


class _StaticTarget(_Model):
    name: StrictStr | None = Field(None, min_length=1)
    url: StrictStr
    auth: StrictStr | None = None
    tls_config: _TLSConfig | None = None
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        normalize_url(url)
        return url

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels, _RESERVED_LABELS | {"auth"})


class _ConfigFile(_Model):
    auths: dict[StrictStr, _Auth] = Field(default_factory=dict)
    targets: list[_StaticTarget] = Field(default_factory=list)
    target_files: list[StrictStr] = Field(default_factory=list)
    cloud: CloudSection | None = None


class _Group(_Model):
    """One entry of a target file (Prometheus file_sd)."""

    targets: list[StrictStr]
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        return _check_labels(labels, _RESERVED_LABELS)


_GROUPS: TypeAdapter[list[_Group]] = TypeAdapter(list[_Group])
_M = TypeVar("_M")


def _place(loc: Iterable[int | str]) -> str:
    """``("targets", 3, "auth")`` -> ``targets[3].auth``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _unwrap(schema: Any) -> Any:
    """``X | None`` -> ``X``; anything else as it is."""
    args = get_args(schema)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return schema


def _keys_at(schema: Any, loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema takes in the mapping that holds ``loc``'s last part."""
    for part in loc[:-1]:
        schema = _unwrap(schema)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            field = schema.model_fields.get(str(part))
            if field is None:
                return []
            schema = field.annotation
        elif get_origin(schema) in (list, dict):
            schema = get_args(schema)[-1]  # the item of a list, the value of a dict
        else:
            return []
    schema = _unwrap(schema)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return list(schema.model_fields)
    return []


def _unknown_key(schema: Any, loc: tuple[int | str, ...]) -> str:
    """``unknown key``, with the nearest known key when there is one (``target`` -> targets)."""
    near = difflib.get_close_matches(str(loc[-1]), _keys_at(schema, loc), n=1, cutoff=0.6)
    return f"unknown key; did you mean {near[0]}?" if near else "unknown key"


def _validate(
    adapter: TypeAdapter[_M], schema: Any, data: Any, path: Path, context: dict[str, Any]
) -> _M:
    try:
        return adapter.validate_python(data, context=context)
    except ValidationError as err:
        errors = err.errors(include_input=False, include_url=False, include_context=False)
        # A misspelt key also leaves its real one missing: name the misspelling, the cause.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        message = _FRIENDLY.get(first["type"], first["msg"].removeprefix("Value error, "))
        if first["type"] == "extra_forbidden" and first["loc"]:
            message = _unknown_key(schema, first["loc"])
        place = _place(first["loc"])
        more = len(errors) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        where = f"{place}: " if place else ""
        raise ConfigError(f"{path}: {where}{message}{suffix}".replace("\n", " ")) from None


_CONFIG_FILE: TypeAdapter[_ConfigFile] = TypeAdapter(_ConfigFile)


# -- the targets ------------------------------------------------------------------------------


class _Targets:
    """Targets in order, each name once; a second definition names where the first was."""

    def __init__(self) -> None:
        self.targets: list[Target] = []
        self.places: dict[str, str] = {}

    def add(self, target: Target, where: str) -> None:
        first = self.places.get(target.name)
        if first is not None:
            raise ConfigError(
                f'{where}: target name "{target.name}" is also defined at {first}'
                + duplicate_hint(target)
            )
        self.places[target.name] = where
        self.targets.append(target)


def _auth(name: str, auths: dict[str, Credentials], where: str) -> Credentials:
    creds = auths.get(name)
    if creds is None:
        known = ", ".join(sorted(auths)) or "none are defined"
        near = difflib.get_close_matches(name, list(auths), n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ConfigError(f'{where}: no auth named "{name}" ({hint}known: {known})')
    return creds


def _tls(config: _TLSConfig | None, default: TLSOptions) -> TLSOptions:
    """A key left out of ``tls_config`` keeps the environment's value."""
    if config is None:
        return default
    verify = (
        default.verify if config.insecure_skip_verify is None else not config.insecure_skip_verify
    )
    return TLSOptions(verify=verify, ca_file=config.ca_file or default.ca_file)


def _target_file_paths(patterns: Iterable[str], base: Path) -> Iterator[Path]:
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        for match in sorted(glob.glob(full)):
            yield Path(match)


@dataclass(frozen=True)
class FleetConfig:
    """Everything a fleet polls: On-Premises targets and Cloud API accounts (every shard's)."""

    targets: list[Target]
    accounts: list[CloudAccount]


def load_fleet(settings: Settings) -> FleetConfig:
    """The whole fleet, every shard's: WA_TARGETS / --target with the environment's credentials
    and TLS, then the configuration file's targets, then its target files' targets; the Cloud
    API accounts of the environment and of the file's ``cloud`` section."""
    env_creds, env_tls = settings.credentials(), settings.tls()
    fleet = _Targets()
    for target in settings.env_targets():
        fleet.add(target, "WA_TARGETS")
    path = settings.config_file
    section = None
    if path is not None:
        section = _load_file(path, fleet, env_creds, env_tls)
    try:
        accounts = load_accounts(settings, section, path)
    except CloudConfigError as err:
        raise ConfigError(str(err)) from None
    if not fleet.targets and not accounts and not settings.demo:
        if path is None:
            raise ConfigError("no targets: set WA_TARGETS, --target or --config.file")
        raise ConfigError(f"{path}: no targets (targets and target_files give none)")
    return FleetConfig(fleet.targets, accounts)


def load_targets(settings: Settings) -> list[Target]:
    """The On-Premises targets of the fleet (``load_fleet``)."""
    return load_fleet(settings).targets


def _load_file(
    path: Path, fleet: _Targets, env_creds: Credentials, env_tls: TLSOptions
) -> CloudSection | None:
    base = path.parent
    data = _parse(path, _read(path))
    config = _validate(
        _CONFIG_FILE, _ConfigFile, {} if data is None else data, path, {"base": base}
    )
    auths = {name: auth.credentials() for name, auth in config.auths.items()}
    for i, static in enumerate(config.targets):
        where = f"{path}: targets[{i}]"
        creds = env_creds if static.auth is None else _auth(static.auth, auths, f"{where}.auth")
        target = Target.at(
            static.url,
            static.name,
            creds,
            _tls(static.tls_config, env_tls),
            tuple(sorted(static.labels.items())),
        )
        fleet.add(target, where)
    for file in _target_file_paths(config.target_files, base):
        _load_target_file(file, fleet, auths, env_creds, env_tls)
    return config.cloud


def _load_target_file(
    path: Path,
    fleet: _Targets,
    auths: dict[str, Credentials],
    env_creds: Credentials,
    env_tls: TLSOptions,
) -> None:
    data = _parse(path, _read(path))
    groups = _validate(_GROUPS, list[_Group], [] if data is None else data, path, {})
    for g, group in enumerate(groups):
        labels = dict(group.labels)
        auth = labels.pop("auth", None)
        creds = env_creds if auth is None else _auth(auth, auths, f"{path}: [{g}].labels.auth")
        label_pairs = tuple(sorted(labels.items()))
        for t, text in enumerate(group.targets):
            where = f"{path}: [{g}].targets[{t}]"
            try:
                target = Target.parse(text, creds, env_tls, label_pairs)
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from None
            fleet.add(target, where)


# -- change detection -------------------------------------------------------------------------

# config file -> ((mtime_ns, size), target file globs, secret and CA files it names)
_references_cache: dict[Path, tuple[tuple[int, int], list[str], list[Path]]] = {}


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _references(path: Path, key: tuple[int, int]) -> tuple[list[str], list[Path]]:
    """The globs and files a configuration file names, re-read only when the file changed."""
    cached = _references_cache.get(path)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    patterns: list[str] = []
    files: list[Path] = []
    try:
        data = _parse(path, _read(path))
    except ConfigError:
        data = None  # the reload that follows reports it
    if isinstance(data, dict):
        patterns = [p for p in _list(data.get("target_files")) if isinstance(p, str)]
        named: list[Any] = []
        for auth in _dict(data.get("auths")).values():
            named += [_dict(auth).get("api_key_file"), _dict(auth).get("password_file")]
        for target in _list(data.get("targets")):
            named.append(_dict(_dict(target).get("tls_config")).get("ca_file"))
        unique = dict.fromkeys(n for n in named if isinstance(n, str))
        files = [path.parent / n for n in unique]
    _references_cache[path] = (key, patterns, files)
    return patterns, files


def config_fingerprint(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every file the fleet comes from: the configuration file, the
    target files its globs match now, and the secret and CA files named. Cheap enough to call
    every few seconds: a change means "reload"."""
    entries: list[tuple[str, int, int]] = []
    files = [f for f in (settings.api_key_file, settings.password_file, settings.tls_ca_file) if f]
    path = settings.config_file
    if path is not None:
        entry = _stat(path)
        entries.append(entry)
        patterns, named = _references(path, (entry[1], entry[2]))
        entries += (_stat(f) for f in _target_file_paths(patterns, path.parent))
        files += named
    entries += (_stat(f) for f in files)
    return tuple(entries)
