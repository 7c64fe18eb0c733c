from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime

from server.auth.dependencies import PrincipalDep, SessionDep
from server.committees import service
from server.committees.schemas import (
    ActionItemCreate,
    ActionItemRead,
    ActionItemUpdateCreate,
    ActionItemUpdateRead,
    AgendaDocumentCreate,
    AgendaItemCreate,
    AgendaItemRead,
    AgendaOrderUpdate,
    CommitteeCreate,
    CommitteeMemberCreate,
    CommitteeRead,
    MeetingCreate,
    MeetingDetailRead,
    MeetingRead,
    MinutesUpdate,
)
from server.directory.endpoints import CatalogDep
from server.directory.service import access_user

router = APIRouter(prefix="/v1", tags=["committees"])

Limit = Annotated[int, Query(ge=1, le=service.MAX_MEETINGS_LISTED)]


@router.post("/committees", status_code=status.HTTP_201_CREATED)
async def create_committee(
    body: CommitteeCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> CommitteeRead:
    committee = await service.do_create_committee(
        session,
        principal,
        catalog,
        name=body.name,
        ceiling=body.ceiling,
        chair=await access_user(session, body.chair),
        secretary=await access_user(session, body.secretary),
        labels=body.labels,
        default_label=body.default_label,
    )
    found = await service.access_committee(session, principal, committee.id)
    return CommitteeRead.of(await service.committee_view(session, *found))


@router.get("/committees")
async def list_committees(principal: PrincipalDep, session: SessionDep) -> list[CommitteeRead]:
    return [CommitteeRead.of(v) for v in await service.committees_of(session, principal)]


@router.get("/committees/{committee}")
async def get_committee(
    committee: str, principal: PrincipalDep, session: SessionDep
) -> CommitteeRead:
    found = await service.access_committee(session, principal, committee)
    return CommitteeRead.of(await service.committee_view(session, *found))


@router.post("/committees/{committee}/members", status_code=status.HTTP_201_CREATED)
async def add_member(
    committee: str,
    body: CommitteeMemberCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> CommitteeRead:
    found, channel = await service.access_committee(session, principal, committee)
    user = await access_user(session, body.user)
    await service.do_add_member(session, principal, catalog, found, channel, user)
    return CommitteeRead.of(await service.committee_view(session, found, channel))


@router.delete("/committees/{committee}/members/{user}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    committee: str, user: str, principal: PrincipalDep, session: SessionDep
) -> None:
    found, channel = await service.access_committee(session, principal, committee)
    await service.do_remove_member(
        session, principal, found, channel, await access_user(session, user)
    )


@router.post("/committees/{committee}/meetings", status_code=status.HTTP_201_CREATED)
async def schedule_meeting(
    committee: str, body: MeetingCreate, principal: PrincipalDep, session: SessionDep
) -> MeetingRead:
    found, channel = await service.access_committee(session, principal, committee)
    meeting = await service.do_schedule_meeting(
        session,
        principal,
        found,
        channel,
        starts_at=body.starts_at,
        info_message_id=body.info_message_id,
    )
    return MeetingRead.of(meeting, channel.id, meeting.minutes_message_id)


@router.get("/committees/{committee}/meetings")
async def list_meetings(
    committee: str,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    since: Annotated[AwareDatetime | None, Query()] = None,
    limit: Limit = 100,
) -> list[MeetingRead]:
    """Meetings by start time (from ``since``), each whose info message your device may
    receive; fetch the messages themselves from the channel."""
    found, channel = await service.access_committee(session, principal, committee)
    meetings = await service.meetings_of(
        session, principal, catalog, channel, found, since=since, limit=limit
    )
    return [MeetingRead.of(m, channel.id, None) for m in meetings]


@router.get("/meetings/{meeting_id}")
async def get_meeting(
    meeting_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> MeetingDetailRead:
    """The meeting's structure, keeping only the items your device may receive."""
    context = await service.access_meeting(session, principal, catalog, meeting_id)
    view = await service.meeting_view(session, principal, catalog, context)
    documents = await service.agenda_documents(
        session, principal, catalog, context, [item.id for item in view.agenda]
    )
    return MeetingDetailRead.of_view(view, documents)


@router.post(
    "/meetings/{meeting_id}/agenda/{item_id}/documents", status_code=status.HTTP_201_CREATED
)
async def attach_document(
    meeting_id: str,
    item_id: str,
    body: AgendaDocumentCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> MeetingDetailRead:
    """Attach a document version to an agenda item (chair or secretary)."""
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    await service.do_attach_document(session, principal, catalog, context, item_id, body.version_id)
    view = await service.meeting_view(session, principal, catalog, context)
    documents = await service.agenda_documents(
        session, principal, catalog, context, [item.id for item in view.agenda]
    )
    return MeetingDetailRead.of_view(view, documents)


@router.post("/meetings/{meeting_id}/cancel")
async def cancel_meeting(
    meeting_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> MeetingRead:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    meeting = await service.do_cancel_meeting(session, principal, context)
    return MeetingRead.of(meeting, context.channel.id, None)


@router.post("/meetings/{meeting_id}/agenda", status_code=status.HTTP_201_CREATED)
async def add_agenda_item(
    meeting_id: str,
    body: AgendaItemCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> AgendaItemRead:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    item = await service.do_add_agenda_item(session, principal, context, message_id=body.message_id)
    return AgendaItemRead.of(item, item.position)


@router.put("/meetings/{meeting_id}/agenda/order")
async def reorder_agenda(
    meeting_id: str,
    body: AgendaOrderUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> MeetingDetailRead:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    await service.do_reorder_agenda(session, principal, catalog, context, body.item_ids)
    return MeetingDetailRead.of_view(
        await service.meeting_view(session, principal, catalog, context)
    )


@router.delete("/meetings/{meeting_id}/agenda/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_agenda_item(
    meeting_id: str, item_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> None:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    await service.do_remove_agenda_item(session, principal, catalog, context, item_id)


@router.put("/meetings/{meeting_id}/minutes")
async def record_minutes(
    meeting_id: str,
    body: MinutesUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> MeetingRead:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    meeting = await service.do_record_minutes(
        session, principal, context, message_id=body.message_id
    )
    return MeetingRead.of(meeting, context.channel.id, meeting.minutes_message_id)


@router.post("/meetings/{meeting_id}/action-items", status_code=status.HTTP_201_CREATED)
async def add_action_item(
    meeting_id: str,
    body: ActionItemCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> ActionItemRead:
    context = await service.access_meeting(session, principal, catalog, meeting_id, for_update=True)
    item = await service.do_add_action_item(session, principal, context, message_id=body.message_id)
    return ActionItemRead.of(service.ActionItemView(item, []), context.channel.id)


@router.get("/action-items/{item_id}")
async def get_action_item(
    item_id: str, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> ActionItemRead:
    """One action item with the updates your device may receive (the client needs its
    channel and message to reply to)."""
    item, context = await service.access_action_item(session, principal, catalog, item_id)
    view = await service.action_item_view(session, principal, catalog, item, context)
    return ActionItemRead.of(view, context.channel.id)


@router.post("/action-items/{item_id}/updates", status_code=status.HTTP_201_CREATED)
async def update_action_item(
    item_id: str,
    body: ActionItemUpdateCreate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> ActionItemUpdateRead:
    item, context = await service.access_action_item(session, principal, catalog, item_id)
    update = await service.do_update_action_item(
        session, principal, item, context, message_id=body.message_id
    )
    return ActionItemUpdateRead.of(update)
