"""Audit policy routes: admin scope, since a policy makes the service start audits itself."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import audits
from app.deps import AdminKey, CeleryDep, SessionDep, SettingsDep
from core import policies
from core.schemas import (
    MAX_DB_INT,
    AuditPublic,
    PoliciesPublic,
    PolicyCreate,
    PolicyPublic,
    PolicyUpdate,
    ReauditRequest,
)
from worker.checks.registry import REGISTRY

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.post("", response_model=PolicyPublic, status_code=201)
def create(
    body: PolicyCreate, session: SessionDep, settings: SettingsDep, key: AdminKey
) -> PolicyPublic:
    return policies.to_public(policies.create_policy(session, settings, REGISTRY, body, key))


@router.get("", response_model=PoliciesPublic)
def list_all(
    session: SessionDep,
    _key: AdminKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> PoliciesPublic:
    rows, count = policies.list_policies(session, limit, offset)
    return PoliciesPublic(data=[policies.to_public(p) for p in rows], count=count)


@router.get("/{policy_id}", response_model=PolicyPublic)
def read(policy_id: str, session: SessionDep, _key: AdminKey) -> PolicyPublic:
    return policies.to_public(policies.get_policy(session, policy_id))


@router.patch("/{policy_id}", response_model=PolicyPublic)
def update(
    policy_id: str, body: PolicyUpdate, session: SessionDep, settings: SettingsDep, _key: AdminKey
) -> PolicyPublic:
    policy = policies.get_policy(session, policy_id)
    return policies.to_public(policies.update_policy(session, settings, REGISTRY, policy, body))


@router.delete("/{policy_id}", status_code=204)
def delete(policy_id: str, session: SessionDep, _key: AdminKey) -> Response:
    policies.delete_policy(session, policies.get_policy(session, policy_id))
    return Response(status_code=204)


@router.post("/{policy_id}/reaudit", response_model=AuditPublic, status_code=201)
def reaudit(
    policy_id: str,
    body: ReauditRequest,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    _key: AdminKey,
) -> AuditPublic:
    """A fresh audit of a version the policy already audited (its one-audit-per-version rule
    set aside); 200 with the same audit when this key was used before."""
    policy = policies.get_policy(session, policy_id)
    audit, created = policies.reaudit(
        session, settings, celery, REGISTRY, policy, body.model_uri, body.key or uuid.uuid4().hex
    )
    if not created:
        response.status_code = 200
    return audits.to_public(session, settings, audit)
