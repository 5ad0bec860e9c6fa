"""Rebuilding a rollout's plan from the snapshot stored with it, so that a restarted
controller follows exactly what was started, whatever happened to the files since."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from coalmine.rollout.plan import build_plan
from coalmine.rollout.state import Plan
from coalmine.spec.model import RouterSettings, ServiceConfig, Tenancy, Upstream
from coalmine.store.base import RolloutRecord


def service_from_dict(data: dict[str, Any]) -> ServiceConfig:
    tenancy = dict(data.get("tenancy") or {})
    tenancy["test_tenants"] = tuple(tenancy.get("test_tenants", ()))
    return ServiceConfig(
        name=data["name"],
        stable=Upstream(**data["stable"]),
        canary=Upstream(**data["canary"]),
        tenancy=Tenancy(**tenancy),
        router=RouterSettings(**data.get("router", {})),
        # older snapshots have no baseline key; asdict() writes None when there is none
        baseline=Upstream(**data["baseline"]) if data.get("baseline") else None,
    )


def _written(tmp: str, files: dict[str, str], prefix: str) -> list[Path]:
    paths = []
    for i, (name, text) in enumerate(files.items()):
        path = Path(tmp) / f"{prefix}{i:02d}-{Path(name).name}"
        path.write_text(text)
        paths.append(path)
    return paths


def plan_from_record(record: RolloutRecord) -> Plan:
    from coalmine.slo.loader import load_slos
    from coalmine.spec.loader import load_bundle

    spec = record.spec
    with tempfile.TemporaryDirectory(prefix="coalmine-snapshot-") as tmp:
        bundle = load_bundle(_written(tmp, spec["files"], ""))
        slo_files = spec.get("slo_files") or {}
        slos = load_slos(_written(tmp, slo_files, "slo-")).slos if slo_files else ()
    return build_plan(
        bundle,
        record.name,
        service_from_dict(spec["service"]),
        float(spec.get("time_scale", 1.0)),
        rollout_class=spec.get("rollout_class"),
        slos=tuple(slos),
        accelerate=bool(spec.get("accelerate", False)),
    )


def service_of(record: RolloutRecord) -> ServiceConfig:
    return service_from_dict(record.spec["service"])
