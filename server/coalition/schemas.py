from __future__ import annotations

from datetime import datetime

from pydantic import Field

from server.coalition.service import Proposal
from server.devices.schemas import TransparencyCheckpoint
from server.schemas import ReadModel


class ProposalRead(ReadModel):
    digest: str
    policy_version: int
    signers: list[str]
    threshold: int
    ready: bool
    proposed_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, proposal: Proposal) -> ProposalRead:
        return cls(
            digest=proposal.signed.policy.digest_b64u,
            policy_version=proposal.signed.policy.policy_version,
            signers=list(proposal.signers),
            threshold=proposal.threshold,
            ready=proposal.ready,
            proposed_at=proposal.proposed_at,
            updated_at=proposal.updated_at,
        )


class PolicyCheckpoint(TransparencyCheckpoint):
    """The checkpoint member of a publication's proof: as a device's bundle has it."""


class PolicyPublication(ReadModel):
    index: int
    leaf: str = Field(description="the policy.publish audit leaf, exactly the bytes hashed")
    proof: list[str] = Field(description="RFC 9162 inclusion proof in the checkpoint's tree")


class PolicyProofRead(ReadModel):
    """A published policy version's publication, proven in the audit log (PROTOCOL.md §18.6)."""

    policy_version: int
    digest: str
    checkpoint: PolicyCheckpoint
    publication: PolicyPublication
