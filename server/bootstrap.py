"""First run: database schema, server keys, and the operator's bootstrap credentials."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import CONSOLE, ROLE_OPERATOR
from server.db import migrate
from server.devices.service import do_issue_enrolment_code
from server.directory.models import User
from server.directory.service import do_create_user
from server.settings import Settings

AUDIT_KEY_FILE = "audit-ed25519.pem"
# The origins the server last started with, in its data directory: for the operator's commands,
# which must not guess them from an environment that may differ from the server's.
ORIGIN_FILE = "origin.json"


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def ensure_server_keys(settings: Settings) -> list[Path]:
    """Create the server's own keys if missing; returns the files created.

    Only the audit log's checkpoint signing key exists so far. It must sign unattended, so it
    is stored unencrypted, readable by the server's user alone (keys/README.md).
    """
    directory = keys_dir(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = []
    audit_key = directory / AUDIT_KEY_FILE
    if not audit_key.exists():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(audit_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        created.append(audit_key)
    return created


@dataclass(frozen=True)
class Origins:
    public_url: str  # what login proofs are bound to
    audit_origin: str  # the name the audit log's checkpoints are signed under


def record_origins(settings: Settings) -> None:
    """Write the origins this server runs under into its data directory (at every start)."""
    path = settings.data_dir / ORIGIN_FILE
    data = {
        "public_url": settings.effective_public_url,
        "audit_origin": settings.effective_audit_origin,
    }
    # A name of this process's own: processes starting together each write whole files.
    temporary = path.with_name(f".{ORIGIN_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def recorded_origins(settings: Settings) -> Origins | None:
    """The origins the server last started with in this data directory; None if it never did
    (or the record is unreadable)."""
    try:
        data = json.loads((settings.data_dir / ORIGIN_FILE).read_text(encoding="utf-8"))
        return Origins(public_url=str(data["public_url"]), audit_origin=str(data["audit_origin"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_storage(settings: Settings) -> None:
    """Create the data directory and bring the database schema to the latest migration."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    migrate.upgrade(settings.effective_database_url)


@dataclass(frozen=True)
class BootstrapCredentials:
    username: str
    code: str


async def bootstrap_operator(
    session: AsyncSession, settings: Settings, username: str = "operator"
) -> BootstrapCredentials | None:
    """Create the first operator account and a one-time enrolment code for it, once.

    Returns None when an operator already exists: the code is shown once and never again
    (``attache-server user code operator`` issues a fresh one).
    """
    existing = (await session.execute(select(User))).scalars().all()
    if any(ROLE_OPERATOR in user.roles for user in existing):
        return None
    catalog = settings.load_catalog()
    user = await do_create_user(
        session,
        CONSOLE,
        catalog,
        username=username,
        display_name="Operator",
        nationality=None,
        roles=[ROLE_OPERATOR],
    )
    issued = await do_issue_enrolment_code(session, CONSOLE, settings, user)
    return BootstrapCredentials(username=user.username, code=issued.code)
