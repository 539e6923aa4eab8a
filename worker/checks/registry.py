"""The registry of check kinds: the families under `worker/checks/`, found by themselves, and
those of outside packages named in the `memaudit.checks` entry-point group.

The API validates params and documents `/v1/checks` from here, the dashboard asks it for a
family's report part, and the worker for a family's pass: one source of truth per kind.
Declarations are light (no torch); a family's pass and report part are imported on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from core.check_kinds import CheckKind, CheckParams, Family, UnknownCheck, resolve

ENTRY_POINT_GROUP = "memaudit.checks"
PACKAGE = "worker.checks"


class RegistryError(RuntimeError):
    """The installed families cannot be read as one registry: the service refuses to start
    (`create_app`, each worker process) rather than fail request by request."""


class RegistryConflict(RegistryError):
    """Two families declare the same kind or family name: which one runs would be a guess."""


def _family(found: object, where: str) -> Family:
    if not isinstance(found, Family):
        raise RegistryError(f"{where} declares FAMILY = {found!r}, not a core.check_kinds.Family")
    return found


def _builtin_families() -> list[Family]:
    """Every package under worker/checks/ with a FAMILY (others are helpers, and skipped)."""
    package = importlib.import_module(PACKAGE)
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        if hasattr(module, "FAMILY"):
            family = _family(module.FAMILY, module.__name__)
            found.append(replace(family, source=module.__name__))
    return found


def _entry_point_families() -> list[Family]:
    found = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        source = point.dist.name if point.dist else point.value
        where = f"entry point {point.name} = {point.value} ({source}) in {ENTRY_POINT_GROUP}"
        try:
            loaded = point.load()
        except Exception as exc:
            raise RegistryError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
        found.append(replace(_family(loaded, where), source=source))
    return found


class Registry:
    @cached_property
    def families(self) -> tuple[Family, ...]:
        families = sorted(
            [*_builtin_families(), *_entry_point_families()], key=lambda f: (f.position, f.name)
        )
        names: dict[str, Family] = {}
        for family in families:
            if family.name in names:
                raise RegistryConflict(f"two check families are named {family.name!r}")
            names[family.name] = family
        return tuple(families)

    @cached_property
    def _index(self) -> tuple[Mapping[str, CheckKind], Mapping[str, Family]]:
        """Every kind by name in family order, and the family that declares it."""
        kinds: dict[str, CheckKind] = {}
        owners: dict[str, Family] = {}
        for family in self.families:
            for kind in family.kinds:
                if kind.name in owners:
                    raise RegistryConflict(
                        f"check kind {kind.name!r} is declared by both the "
                        f"{owners[kind.name].name} ({owners[kind.name].source}) and the "
                        f"{family.name} ({family.source}) families"
                    )
                kinds[kind.name], owners[kind.name] = kind, family
        return MappingProxyType(kinds), MappingProxyType(owners)

    @property
    def kinds(self) -> Mapping[str, CheckKind]:
        return self._index[0]

    def load(self, *, passes: bool = False) -> Registry:
        """Every family read and its report part imported (and its pass, in a worker), so a
        broken install stops the service at start with the entry point's name, not each
        request with a bare ImportError."""
        for family in self.families:
            targets = [family.report] if family.report else []
            targets += [family.shard_pass] if passes else []
            for target in targets:
                try:
                    resolve(target)
                except Exception as exc:
                    raise RegistryError(
                        f"the {family.name} check family ({family.source}): {target} failed "
                        f"to import: {type(exc).__name__}: {exc}"
                    ) from exc
        self.kinds  # noqa: B018 - two owners of one kind are refused here
        return self

    def get_check(self, name: str) -> CheckKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise UnknownCheck(name, list(self.kinds)) from None

    def family_of(self, name: str) -> Family:
        self.get_check(name)
        return self._index[1][name]

    def parse_checks(
        self, entries: Sequence[Mapping[str, Any]]
    ) -> list[tuple[CheckKind, CheckParams]]:
        """(kind, validated params) for each `{"kind", "params"}` entry, in order."""
        parsed = []
        for entry in entries:
            kind = self.get_check(entry["kind"])
            parsed.append((kind, kind.parse_params(entry.get("params", {}))))
        return parsed

    def report_part(self, family: Family) -> Any:
        """The family's ReportPart, imported now; None for a family that draws nothing."""
        return resolve(family.report) if family.report else None

    def report_parts(self) -> list[Any]:
        return [part for family in self.families if (part := self.report_part(family))]

    def shard_pass(self, target: str) -> Any:
        """The function a family's `shard_pass` names, imported now (worker only)."""
        return resolve(target)


REGISTRY = Registry()
