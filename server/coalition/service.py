"""Publishing coalition policy versions (PROTOCOL.md §18).

Every publication and every refusal writes its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from protocol.canonical import canonical_json
from protocol.catalog import Catalog
from protocol.coalition import (
    CoalitionPolicy,
    PolicyError,
    SignedPolicy,
    check_successor,
    signing_nations,
    verify_founding,
    verify_successor,
)
from server.audit import log as audit
from server.audit import publications
from server.auth.principal import ROLE_SECURITY_OFFICER, Caller, check_operator
from server.coalition import repository as repo
from server.coalition.models import CoalitionPolicyProposal, CoalitionPolicyVersion
from server.db.base import utcnow
from server.db.engine import serialise
from server.errors import Conflict, InvalidInput, NotFound, PermissionDenied

# --- the policy in force ---------------------------------------------------------------------


@dataclass(frozen=True)
class InForce:
    """The latest published version and the catalog the server decides with under it: the
    policy's catalog (its TOML with its nations and groups), its ``version`` naming the
    policy version, so that every decision's audit event (which records the catalog's
    version) names the policy version it used."""

    policy: CoalitionPolicy
    catalog: Catalog


def catalog_version_of(policy: CoalitionPolicy) -> str:
    return f"{policy.coalition}.policy.{policy.policy_version}"


# Parsed once per version: the latest version's digest is read on each catalog refresh, its
# document (up to about 1 MiB) only when it is new to this process.
_IN_FORCE: dict[str, InForce] = {}


async def policy_in_force(session: AsyncSession) -> InForce | None:
    """The latest published version (None before the founding version is published)."""
    latest = await repo.latest_digest(session)
    if latest is None:
        return None
    found = _IN_FORCE.get(latest[1])
    if found is None:
        row = await repo.get(session, latest[0])
        assert row is not None
        policy = SignedPolicy.from_json(row.document).policy
        catalog = replace(policy.catalog(), version=catalog_version_of(policy))
        found = InForce(policy, catalog)
        if len(_IN_FORCE) >= 8:
            _IN_FORCE.clear()
        _IN_FORCE[latest[1]] = found
    return found


@dataclass(frozen=True)
class Published:
    row: CoalitionPolicyVersion
    policy: CoalitionPolicy
    signers: tuple[str, ...]


def parse_signed_policy(document: str | bytes) -> SignedPolicy:
    try:
        return SignedPolicy.from_json(document)
    except PolicyError as exc:
        raise InvalidInput(f"not a signed coalition policy: {exc}", field="policy") from exc


async def latest_policy(session: AsyncSession) -> CoalitionPolicy | None:
    """The latest published version, as verified when it was published."""
    row = await repo.latest(session)
    return None if row is None else SignedPolicy.from_json(row.document).policy


async def access_policy(session: AsyncSession, policy_version: int | None) -> str:
    """The signed policy document of ``policy_version`` (the latest if None), as stored."""
    row = await (
        repo.latest(session) if policy_version is None else repo.get(session, policy_version)
    )
    if row is None:
        what = (
            "no coalition policy"
            if policy_version is None
            else f"no policy version {policy_version}"
        )
        raise NotFound(f"{what} is published")
    return row.document


async def access_policy_proof(
    session: AsyncSession,
    policy_version: int,
    old: int,
    witnesses: Sequence[str] = (),
    min_witnesses: int | None = None,
) -> dict[str, Any]:
    """The proof that published version ``policy_version`` is in the audit log, at the latest
    checkpoint (or the latest that ``min_witnesses`` of the named ``witnesses`` cosigned),
    consistent with size ``old`` (PROTOCOL.md §17.3.1, §18.6). 404 for a version not
    published, or one the log has no publication of; 503 until its leaf is in that
    checkpoint."""
    row = await repo.get(session, policy_version)
    if row is None:
        raise NotFound(f"no policy version {policy_version} is published")
    return await publications.publication_proof(
        session, policy_version, row.digest, old, witnesses, min_witnesses
    )


async def do_publish_policy(
    session: AsyncSession, caller: Caller, signed: SignedPolicy
) -> Published:
    """Publish ``signed`` once it verifies: as the founding version when none is published
    (signed by every nation it lists), otherwise as the successor of the latest (its
    threshold of that version's nations). Operator only.

    The server only checks and stores: the signatures make the version valid, and every
    client checks them again. A refusal is audited (deny) and changes nothing else.
    """
    check_operator(caller)
    # One publication at a time: two successors of one version must not both be stored.
    await serialise(session, "coalition-policy")
    current = await latest_policy(session)
    policy = signed.policy
    details = {"coalition": policy.coalition, "digest": policy.digest_b64u}
    if current is not None and policy.digest == current.digest:
        raise Conflict(
            f"policy version {policy.policy_version} is already published",
            policy_version=policy.policy_version,
        )
    try:
        if current is None:
            verify_founding(signed)
        else:
            verify_successor(current, signed)
    except PolicyError as exc:
        raise _refused(session, caller, "policy.publish", policy, details, exc) from exc
    # verify_* accept a document only when every signature it carries counted.
    signers = tuple(sorted({entry.nation for entry in signed.signatures}))
    row = CoalitionPolicyVersion(
        policy_version=policy.policy_version,
        coalition=policy.coalition,
        digest=policy.digest_b64u,
        document=canonical_json(signed.to_json()).decode("utf-8"),
    )
    session.add(row)
    audit.record(
        session,
        actor=caller.actor,
        action="policy.publish",
        object_type="policy",
        object_id=str(policy.policy_version),
        details={
            **details,
            "previous": None if current is None else current.digest_b64u,
            "signers": list(signers),
            "threshold": policy.threshold,
            "nations": sorted(policy.nations),
            "catalog_version": policy.catalog().version,
        },
    )
    await session.flush()
    return Published(row=row, policy=policy, signers=signers)


# --- proposals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A proposed next version, its signatures so far, and the threshold it needs."""

    signed: SignedPolicy
    signers: tuple[str, ...]
    threshold: int
    proposed_at: datetime
    updated_at: datetime

    @property
    def ready(self) -> bool:
        return len(self.signers) >= self.threshold


def check_governs_policy(caller: Caller) -> None:
    """Security officers (who hold their nation's authority key) and operators."""
    if not (caller.is_operator or caller.has_role(ROLE_SECURITY_OFFICER)):
        raise PermissionDenied("only a security officer or an operator may propose a policy")


def _proposal(row: CoalitionPolicyProposal, threshold: int) -> Proposal:
    signed = SignedPolicy.from_json(row.document)
    signers = tuple(sorted({entry.nation for entry in signed.signatures}))
    return Proposal(signed, signers, threshold, row.proposed_at, row.updated_at)


async def _published_or_conflict(session: AsyncSession) -> CoalitionPolicy:
    current = await latest_policy(session)
    if current is None:
        raise Conflict(
            "no coalition policy is published yet: the operator publishes the founding version, "
            "signed by every founding nation (attache-server policy publish)"
        )
    return current


async def do_propose_policy(
    session: AsyncSession, caller: Caller, signed: SignedPolicy
) -> tuple[Proposal, bool]:
    """Store ``signed`` as a proposed next version, or add the signatures it carries to the
    stored proposal of the same version (same digest); returns it and whether it is new.
    A security officer or an operator.

    The proposal must follow the latest published version, and every signature it carries
    must count under that version (PROTOCOL.md §18.3): the server keeps only signatures that
    would count at publication. A nation that has signed already keeps its first signature.
    A refusal is audited (deny) and changes nothing else.
    """
    check_governs_policy(caller)
    await serialise(session, "coalition-policy")
    current = await _published_or_conflict(session)
    policy = signed.policy
    details = {"digest": policy.digest_b64u, "policy_version": policy.policy_version}
    try:
        check_successor(current, policy)
        signing_nations(current, signed)
    except PolicyError as exc:
        raise _refused(session, caller, "policy.propose", policy, details, exc) from exc
    row = await repo.get_proposal(session, policy.digest_b64u)
    created = row is None
    kept = () if row is None else SignedPolicy.from_json(row.document).signatures
    have = {entry.nation for entry in kept}
    added = [entry for entry in signed.signatures if entry.nation not in have]
    merged = SignedPolicy(policy, (*kept, *added))
    document = canonical_json(merged.to_json()).decode("utf-8")
    if row is None:
        row = CoalitionPolicyProposal(
            digest=policy.digest_b64u, policy_version=policy.policy_version, document=document
        )
        session.add(row)
    elif added:
        row.document = document
        row.updated_at = utcnow()
    if created or added:
        audit.record(
            session,
            actor=caller.actor,
            action="policy.propose" if created else "policy.sign",
            object_type="policy",
            object_id=str(policy.policy_version),
            details={
                **details,
                "signed_by": sorted(entry.nation for entry in added),
                "signers": sorted({entry.nation for entry in merged.signatures}),
                "threshold": current.threshold,
            },
        )
    await session.flush()
    return _proposal(row, current.threshold), created


async def list_proposals(session: AsyncSession) -> list[Proposal]:
    """The proposals for the version after the latest published one (none before the first)."""
    current = await latest_policy(session)
    if current is None:
        return []
    rows = await repo.list_proposals(session, current.policy_version + 1)
    return [_proposal(row, current.threshold) for row in rows]


async def access_proposal(session: AsyncSession, digest: str) -> CoalitionPolicyProposal:
    row = await repo.get_proposal(session, digest)
    if row is None:
        raise NotFound(f"no proposal {digest}", digest=digest)
    return row


async def do_publish_proposal(session: AsyncSession, caller: Caller, digest: str) -> Published:
    """Publish the stored proposal ``digest`` with its signatures, as ``do_publish_policy``."""
    check_operator(caller)
    row = await access_proposal(session, digest)
    return await do_publish_policy(session, caller, SignedPolicy.from_json(row.document))


def _refused(
    session: AsyncSession,
    caller: Caller,
    action: str,
    policy: CoalitionPolicy,
    details: Mapping[str, object],
    exc: PolicyError,
) -> InvalidInput:
    """Audit a refused publication or proposal, and the error that answers it (422, which
    keeps the deny event)."""
    audit.record(
        session,
        actor=caller.actor,
        action=action,
        object_type="policy",
        object_id=str(policy.policy_version),
        decision=audit.DENY,
        reasons=[str(exc)],
        details=dict(details),
    )
    what = "proposed policy version" if action == "policy.propose" else "policy version"
    return InvalidInput(
        f"{what} {policy.policy_version} is refused: {exc}", field="policy", keep_changes=True
    )
