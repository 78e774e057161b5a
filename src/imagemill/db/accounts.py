"""Owner queries: owners, API keys and presets. All of their SQL lives here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from imagemill.boundary import quoted
from imagemill.db.engine import Database
from imagemill.db.prepared import Prepared
from imagemill.db.tables import api_keys, owners, presets
from imagemill.errors import Conflict, NotFound
from imagemill.ids import new_id
from imagemill.spend.limits import KeyLimits

_OWNER_FOR_KEY = Prepared(
    select(
        owners,
        api_keys.c.id.label("key_id"),
        api_keys.c.admin,
        api_keys.c.requests_per_minute,
        api_keys.c.images_per_minute,
        api_keys.c.concurrent_jobs,
    )
    .join(api_keys, api_keys.c.owner_id == owners.c.id)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)
PRESET_ID_PREFIX = "pre_"  # what a preset's id starts with (and no name may)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a request acts for; ``key_id`` and ``admin`` describe the API key it came with
    (none: keyless, or read outside a request)."""

    id: str
    name: str
    secret: str
    key_id: str | None = None
    admin: bool = False  # the key may manage every owner's budgets
    limits: KeyLimits = field(default_factory=KeyLimits)  # the key's rate limits


@dataclass(frozen=True, slots=True)
class Preset:
    id: str
    owner_id: str
    name: str
    description: str
    model: str | None
    prompt_template: str
    negative_prompt: str | None
    size: str | None
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    builtin: bool = False  # one of every server's styles (``imagemill.styles``), read-only


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as people see it: never the key itself, only its first characters."""

    id: str
    name: str
    prefix: str
    owner: str  # the owner's name
    created_at: datetime
    revoked_at: datetime | None
    admin: bool = False
    limits: KeyLimits = field(default_factory=KeyLimits)


PRESET_FIELDS = (
    "name",
    "description",
    "model",
    "prompt_template",
    "negative_prompt",
    "size",
    "params",
)


def _key_info(row: Row[Any]) -> KeyInfo:
    limits = KeyLimits(row.requests_per_minute, row.images_per_minute, row.concurrent_jobs)
    return KeyInfo(
        row.id, row.name, row.prefix, row.owner, row.created_at, row.revoked_at, row.admin, limits
    )


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def owner_named(self, name: str, now: datetime) -> Owner:
        """The owner called ``name``, created on first use."""
        query = select(owners).where(owners.c.name == name)
        row = await self.db.read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            insert = (
                self.db.insert(owners)
                .on_conflict_do_nothing()
                .values(
                    id=new_id("own"), name=name, secret=secrets.token_urlsafe(32), created_at=now
                )
            )

            def work(conn: Connection) -> Row[Any]:
                conn.execute(insert)  # a no-op when created concurrently
                return conn.execute(query).one()

            row = await self.db.write(work)
        return Owner(row.id, row.name, row.secret)

    async def get_owner(self, owner_id: str) -> Owner:
        query = select(owners).where(owners.c.id == owner_id)
        row = await self.db.read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            raise NotFound(f"no owner {quoted(owner_id)}")
        return Owner(row.id, row.name, row.secret)

    async def add_key(
        self,
        owner_id: str,
        name: str,
        prefix: str,
        key_hash: str,
        now: datetime,
        *,
        admin: bool = False,
    ) -> str:
        key_id = new_id("key")
        statement = api_keys.insert().values(
            id=key_id,
            owner_id=owner_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            created_at=now,
            admin=admin,
        )
        await self.db.write(lambda conn: conn.execute(statement))
        return key_id

    async def owner_for_key(self, key_hash: str) -> Owner | None:
        row = await self.db.fetch_one(_OWNER_FOR_KEY, {"key_hash": key_hash})
        if row is None:
            return None
        limits = KeyLimits(row.requests_per_minute, row.images_per_minute, row.concurrent_jobs)
        return Owner(row.id, row.name, row.secret, row.key_id, row.admin, limits)

    async def list_keys(self) -> list[KeyInfo]:
        """Every key of every owner, oldest first (revoked ones too)."""
        query = (
            select(api_keys, owners.c.name.label("owner"))
            .join(owners, owners.c.id == api_keys.c.owner_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        rows = await self.db.read(lambda conn: conn.execute(query).all())
        return [_key_info(row) for row in rows]

    async def find_key(self, id_or_prefix: str) -> KeyInfo:
        """The key with this id or prefix (as ``keys ls`` shows them); ``NotFound``, or
        ``Conflict`` when several keys start alike."""
        matches = [k for k in await self.list_keys() if id_or_prefix in (k.id, k.prefix)]
        if not matches:
            raise NotFound(f"no key {quoted(id_or_prefix)} (`imagemill keys ls` lists them)")
        if len(matches) > 1:
            raise Conflict(
                f"{len(matches)} keys start with {quoted(id_or_prefix)}: give the key's id"
            )
        return matches[0]

    async def set_limits(self, key_id: str, limits: KeyLimits) -> None:
        """Replace the rate limits of the key ``key_id`` (``None`` fields: unlimited)."""
        statement = (
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(
                requests_per_minute=limits.requests_per_minute,
                images_per_minute=limits.images_per_minute,
                concurrent_jobs=limits.concurrent_jobs,
            )
        )
        if not await self.db.write(lambda conn: conn.execute(statement).rowcount):
            raise NotFound(f"no key {quoted(key_id)} (`imagemill keys ls` lists them)")

    async def find_owner(self, name: str) -> Owner:
        """The owner called ``name``; ``NotFound`` if there is none."""
        query = select(owners).where(owners.c.name == name)
        row = await self.db.read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            raise NotFound(f"no owner {quoted(name)}")
        return Owner(row.id, row.name, row.secret)

    async def revoke_key(self, id_or_prefix: str, now: datetime) -> KeyInfo:
        """Revoke the key with this id or prefix: it opens nothing from now on (requests and
        studio sessions signed by it get 401). Revoking it again changes nothing."""
        key = await self.find_key(id_or_prefix)
        if key.revoked_at is None:
            statement = (
                update(api_keys)
                .where(api_keys.c.id == key.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            await self.db.write(lambda conn: conn.execute(statement))
        return next(k for k in await self.list_keys() if k.id == key.id)

    async def active_key_count(self) -> int:
        query = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)
        return await self.db.read(lambda conn: len(conn.execute(query).all()))

    # -- presets --------------------------------------------------------------------------

    async def create_preset(self, owner_id: str, fields: dict[str, Any], now: datetime) -> Preset:
        preset_id = new_id(PRESET_ID_PREFIX.removesuffix("_"))
        statement = presets.insert().values(
            id=preset_id, owner_id=owner_id, created_at=now, updated_at=now, **fields
        )
        try:
            await self.db.write(lambda conn: conn.execute(statement))
        except IntegrityError as exc:
            raise Conflict(
                f"a preset named {quoted(fields['name'])} already exists", field="name"
            ) from exc
        return await self.get_preset(owner_id, preset_id)

    async def get_preset(self, owner_id: str, id_or_name: str) -> Preset:
        by_id = presets.c.id == id_or_name
        query = (
            select(presets)
            .where(presets.c.owner_id == owner_id, by_id | (presets.c.name == id_or_name))
            .order_by(by_id.desc())  # an id first (names shaped like ids predate refusing them)
            .limit(1)
        )
        row = await self.db.read(lambda conn: conn.execute(query).first())
        if row is None:
            raise NotFound(f"no preset {quoted(id_or_name)}")
        return Preset(**row._mapping)

    async def list_presets(self, owner_id: str) -> list[Preset]:
        query = select(presets).where(presets.c.owner_id == owner_id).order_by(presets.c.name)
        return await self.db.read(
            lambda conn: [Preset(**r._mapping) for r in conn.execute(query).all()]
        )

    async def update_preset(
        self, owner_id: str, id_or_name: str, fields: dict[str, Any], now: datetime
    ) -> Preset:
        preset = await self.get_preset(owner_id, id_or_name)
        statement = (
            update(presets).where(presets.c.id == preset.id).values(updated_at=now, **fields)
        )
        try:
            await self.db.write(lambda conn: conn.execute(statement))
        except IntegrityError as exc:
            name = quoted(str(fields.get("name")))
            raise Conflict(f"a preset named {name} already exists", field="name") from exc
        return await self.get_preset(owner_id, preset.id)

    async def delete_preset(self, owner_id: str, id_or_name: str) -> None:
        preset = await self.get_preset(owner_id, id_or_name)
        statement = delete(presets).where(presets.c.id == preset.id)
        await self.db.write(lambda conn: conn.execute(statement))
