"""First run: database schema, server keys, and the operator's bootstrap credentials."""

from __future__ import annotations

import json
import os
import secrets
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


def _make_keys_dir(settings: Settings) -> Path:
    """The keys directory, made if missing: it and a new data directory private (mkdir's
    ``mode`` covers the last directory alone)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory = keys_dir(settings)
    directory.mkdir(exist_ok=True, mode=0o700)
    return directory


def ensure_server_keys(settings: Settings) -> list[Path]:
    """Create the server's own keys if missing; returns the files this call created.

    Only the audit log's checkpoint signing key exists so far. It must sign unattended, so it
    is stored unencrypted, readable by the server's user alone (keys/README.md). Processes
    starting together in one new data directory each make a key, and exactly one of them is
    placed (``_place``): every process then loads that one, and none ever reads a file half
    written.
    """
    directory = _make_keys_dir(settings)
    created = []
    audit_key = directory / AUDIT_KEY_FILE
    if not audit_key.exists():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if _place(audit_key, pem):
            created.append(audit_key)
    return created


def _place(path: Path, data: bytes) -> bool:
    """Put ``data`` at ``path`` (mode 0600) unless a file is there already; True if this call
    put it there.

    Atomic: the bytes go to a file of this call's own, synced, then hard-linked to ``path``,
    which fails if ``path`` exists. So other processes see no file or the whole of one, and
    of several racing calls exactly one wins. (``rename`` would not do: it replaces what is
    there, and the last of several racers would win after the first had loaded its own key.)
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True
    finally:
        temporary.unlink(missing_ok=True)


# --- moving the server keys between machines (attache-server keys export, import) ------------

# Every file of the keys directory that makes a server's identity: what an export carries.
SERVER_KEY_FILES = (AUDIT_KEY_FILE,)
EXPORT_FORMAT = "attache-server-keys/1"


class KeysError(Exception):
    """A keys export or import that cannot be done; the message never holds key material."""


def export_keys(settings: Settings, destination: Path) -> list[str]:
    """Write the server keys into a new file at ``destination``, readable by its owner alone;
    returns the names of the keys written. Never overwrites a file (nor follows a link)."""
    directory = keys_dir(settings)
    found = {}
    for name in SERVER_KEY_FILES:
        try:
            found[name] = (directory / name).read_text(encoding="ascii")
        except FileNotFoundError:
            continue
    if not found:
        raise KeysError(
            f"there are no server keys in {directory} to export; run 'attache-server init' "
            "(or start the server once) on this machine first"
        )
    data = json.dumps({"format": EXPORT_FORMAT, "keys": found}, indent=2) + "\n"
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeysError(f"{destination} exists already; give the name of a new file") from None
    except OSError as exc:
        raise KeysError(f"cannot create {destination}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return sorted(found)


def read_export(source: Path) -> dict[str, bytes]:
    """The keys in an export file, each checked to be a key of its kind."""
    try:
        data = json.loads(source.read_text(encoding="ascii"))
    except OSError as exc:
        raise KeysError(f"cannot read {source}: {exc.strerror}") from None
    except ValueError:
        raise KeysError(f"{source} is not a file written by 'attache-server keys export'") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise KeysError(f"{source} is not a file written by 'attache-server keys export'")
    found = data.get("keys")
    if not isinstance(found, dict) or not found:
        raise KeysError(f"{source} holds no keys")
    keys: dict[str, bytes] = {}
    for name, pem in found.items():
        # Only names this version knows: the name becomes a file name in the keys directory.
        if name not in SERVER_KEY_FILES or not isinstance(pem, str):
            raise KeysError(f"{source} holds a key this version of Attaché does not know")
        try:
            key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            key = None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeysError(f"{source} holds a damaged {name} (not an Ed25519 private key)")
        keys[name] = pem.encode("ascii")
    return keys


def import_keys(settings: Settings, source: Path) -> list[tuple[str, bool]]:
    """Put the keys of an export file into this data directory; returns each key's name and
    whether it was placed now (False: this directory held the same key already).

    Refuses, changing nothing, if the directory holds a different key of the same name: a
    server that signed with it would sign on with another, and the auditors who pinned it
    would see checkpoints they cannot verify.
    """
    keys = read_export(source)
    directory = _make_keys_dir(settings)

    def differs(name: str) -> bool:
        try:
            return (directory / name).read_bytes() != keys[name]
        except FileNotFoundError:
            return False

    for name in keys:
        if differs(name):
            raise KeysError(
                f"{directory / name} holds another key already. A server started with this "
                "data directory before the import, and made its own: if no auditor has pinned "
                "it, remove that file and import again; otherwise keep it"
            )
    placed = []
    for name, pem in sorted(keys.items()):
        now = _place(directory / name, pem)
        if not now and differs(name):  # made by a server starting meanwhile
            raise KeysError(f"{directory / name} was created meanwhile by a starting server")
        placed.append((name, now))
    return placed


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
