"""Publishing coalition policy versions (PROTOCOL.md §18).

Every publication and every refusal writes its audit event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from protocol.canonical import canonical_json
from protocol.coalition import (
    CoalitionPolicy,
    PolicyError,
    SignedPolicy,
    verify_founding,
    verify_successor,
)
from server.audit import log as audit
from server.auth.principal import Caller, check_operator
from server.coalition import repository as repo
from server.coalition.models import CoalitionPolicyVersion
from server.db.engine import serialise
from server.errors import Conflict, InvalidInput, NotFound


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
        audit.record(
            session,
            actor=caller.actor,
            action="policy.publish",
            object_type="policy",
            object_id=str(policy.policy_version),
            decision=audit.DENY,
            reasons=[str(exc)],
            details=details,
        )
        raise InvalidInput(
            f"policy version {policy.policy_version} is refused: {exc}",
            field="policy",
            keep_changes=True,
        ) from exc
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
