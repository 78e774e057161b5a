"""Owners, API keys and presets."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from sqlalchemy import update

from imagemill.auth import hash_key, new_key
from imagemill.db.tables import api_keys
from imagemill.errors import Conflict, NotFound
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime


def _fields(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "poster",
        "description": "tall posters",
        "model": "placeholder",
        "prompt_template": "{prompt}, poster",
        "negative_prompt": None,
        "size": "768x1024",
        "params": {"latency_ms": 1},
        **overrides,
    }


async def test_owner_named_creates_once(stepped: Runtime) -> None:
    first = await stepped.accounts.owner_named("alice", utcnow())
    again = await stepped.accounts.owner_named("alice", utcnow())
    bob = await stepped.accounts.owner_named("bob", utcnow())

    assert first == again
    assert first.id.startswith("own_")
    assert len(first.secret) >= 32
    assert bob.id != first.id and bob.secret != first.secret
    assert await stepped.accounts.get_owner(first.id) == first
    with pytest.raises(NotFound):
        await stepped.accounts.get_owner("own_missing")


async def test_owner_named_concurrently_creates_one(stepped: Runtime) -> None:
    owners = await asyncio.gather(
        *(stepped.accounts.owner_named("carol", utcnow()) for _ in range(5))
    )
    assert len({o.id for o in owners}) == 1


async def test_a_key_is_found_by_its_hash_until_revoked(stepped: Runtime) -> None:
    owner = await stepped.accounts.owner_named("alice", utcnow())
    key = new_key()
    assert await stepped.accounts.active_key_count() == 0

    key_id = await stepped.accounts.add_key(owner.id, "laptop", key.prefix, key.key_hash, utcnow())

    assert key_id.startswith("key_")
    assert key.plaintext.startswith(key.prefix)
    assert key.key_hash == hash_key(key.plaintext) != key.plaintext
    found = await stepped.accounts.owner_for_key(hash_key(key.plaintext))
    assert found == dataclasses.replace(owner, key_id=key_id, admin=False)
    assert await stepped.accounts.owner_for_key(hash_key(key.plaintext + "x")) is None
    assert await stepped.accounts.active_key_count() == 1

    revoke = update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow())
    await stepped.db.write(lambda conn: conn.execute(revoke))
    assert await stepped.accounts.owner_for_key(key.key_hash) is None
    assert await stepped.accounts.active_key_count() == 0


async def test_preset_crud(stepped: Runtime) -> None:
    owner = await stepped.accounts.owner_named("alice", utcnow())

    created = await stepped.accounts.create_preset(owner.id, _fields(), utcnow())
    assert created.id.startswith("pre_")
    assert (created.name, created.size, created.params) == ("poster", "768x1024", {"latency_ms": 1})
    assert await stepped.accounts.get_preset(owner.id, created.id) == created
    assert await stepped.accounts.get_preset(owner.id, "poster") == created

    await stepped.accounts.create_preset(owner.id, _fields(name="avatar"), utcnow())
    assert [p.name for p in await stepped.accounts.list_presets(owner.id)] == ["avatar", "poster"]

    updated = await stepped.accounts.update_preset(
        owner.id, "poster", {"description": "wide", "size": "1024x768"}, utcnow()
    )
    assert (updated.id, updated.description, updated.size) == (created.id, "wide", "1024x768")
    assert updated.updated_at >= created.updated_at
    assert updated.prompt_template == created.prompt_template

    await stepped.accounts.delete_preset(owner.id, created.id)
    with pytest.raises(NotFound):
        await stepped.accounts.get_preset(owner.id, "poster")
    with pytest.raises(NotFound):
        await stepped.accounts.delete_preset(owner.id, "poster")
    assert [p.name for p in await stepped.accounts.list_presets(owner.id)] == ["avatar"]


async def test_an_id_means_its_own_preset_even_if_a_name_says_the_same(stepped: Runtime) -> None:
    """A name shaped like an id (refused at the API now, possible in older data) never
    stands in for the preset with that id."""
    owner = await stepped.accounts.owner_named("alice", utcnow())
    real = await stepped.accounts.create_preset(owner.id, _fields(), utcnow())
    await stepped.accounts.create_preset(owner.id, _fields(name=real.id), utcnow())

    assert await stepped.accounts.get_preset(owner.id, real.id) == real


async def test_preset_names_are_unique_per_owner(stepped: Runtime) -> None:
    alice = await stepped.accounts.owner_named("alice", utcnow())
    bob = await stepped.accounts.owner_named("bob", utcnow())
    await stepped.accounts.create_preset(alice.id, _fields(), utcnow())
    other = await stepped.accounts.create_preset(alice.id, _fields(name="other"), utcnow())

    with pytest.raises(Conflict):
        await stepped.accounts.create_preset(alice.id, _fields(), utcnow())
    with pytest.raises(Conflict):
        await stepped.accounts.update_preset(alice.id, other.id, {"name": "poster"}, utcnow())
    assert (await stepped.accounts.get_preset(alice.id, other.id)).name == "other"

    theirs = await stepped.accounts.create_preset(
        bob.id, _fields(), utcnow()
    )  # same name, other owner
    assert theirs.owner_id == bob.id
    with pytest.raises(NotFound):
        await stepped.accounts.get_preset(alice.id, theirs.id)
    with pytest.raises(NotFound):
        await stepped.accounts.update_preset(alice.id, theirs.id, {"description": "mine"}, utcnow())
