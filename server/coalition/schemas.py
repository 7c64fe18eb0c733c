from __future__ import annotations

from datetime import datetime

from server.coalition.service import Proposal
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
