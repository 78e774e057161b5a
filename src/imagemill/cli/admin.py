"""``imagemill models``, ``imagemill keys`` and ``imagemill db``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from imagemill.specs import ModelSpec

if TYPE_CHECKING:
    from imagemill.db.accounts import KeyInfo

from imagemill.cli.common import (
    ApiKeyOption,
    DataDirOption,
    ServerOption,
    _database,
    _run,
    _settings,
    _with_client,
    app,
    console,
    db_app,
    err_console,
    keys_app,
)


@app.command()
def models(
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List every model: what it can do, whether it is available, and its price (per
    image; text models per million tokens read / written, as $in/out Mtok)."""

    specs = _with_client(server, api_key, data_dir, lambda client: client.models.list())
    table = Table("id", "kinds", "price", "ready", box=None)
    why: dict[str, list[str]] = {}
    for spec in specs:
        table.add_row(
            spec.id, ", ".join(spec.kinds), _price(spec), "yes" if spec.available else "[red]no[/]"
        )
        if not spec.available:
            why.setdefault(spec.unavailable_reason or "unavailable", []).append(spec.id)
    for column in (table.columns[0], table.columns[2], table.columns[3]):
        column.no_wrap = True  # the kinds wrap instead, a kind to a line if need be
    console.print(table)
    for reason, ids in why.items():
        console.print(f"[red]not available[/]: {escape(reason)} ({', '.join(ids)})")


def _price(spec: ModelSpec) -> str:
    pricing = spec.pricing
    unit = "" if pricing.currency == "USD" else f" {pricing.currency}"
    if pricing.per_million_input_tokens or pricing.per_million_output_tokens:  # a text model
        read, written = pricing.per_million_input_tokens, pricing.per_million_output_tokens
        return f"${read:g}/{written:g} Mtok{unit}"  # in / out, per million tokens
    prices = [
        pricing.per_image,
        *pricing.by_size.values(),
        *(p for table in pricing.by_quality.values() for p in table.values()),
    ]
    if not any(prices):
        return "free"
    low, high = min(prices), max(prices)
    span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return f"${span}" if pricing.currency == "USD" else f"{span} {pricing.currency}"


# -- keys, db ---------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[
        str,
        typer.Argument(help="A name for the key, e.g. the person or machine.", show_default=False),
    ],
    owner: Annotated[
        str | None,
        typer.Option(
            help="Owner of the key and of everything made with it, created if new "
            "(default: NAME). Jobs made without a key belong to the owner 'local'.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key and print it. It is shown this once: only its hash is stored."""
    from imagemill.auth import new_key
    from imagemill.db.accounts import Accounts
    from imagemill.jobs.service import utcnow

    async def run() -> tuple[str, str]:
        async with _database(_settings(data_dir)) as db:
            accounts = Accounts(db)
            account = await accounts.owner_named(owner or name, utcnow())
            key = new_key()
            await accounts.add_key(account.id, name, key.prefix, key.key_hash, utcnow())
            return account.name, key.plaintext

    owner_name, plaintext = _run(run())
    err_console.print(
        f"created key {escape(name)!r} for owner {escape(owner_name)!r}. "
        "Copy it now, it is not shown again:"
    )
    console.print(plaintext, highlight=False, soft_wrap=True)


@keys_app.command("ls")
def keys_ls(data_dir: DataDirOption = None) -> None:
    """List every key: its id, name, owner, first characters and whether it is revoked."""
    from imagemill.db.accounts import Accounts

    async def run() -> list[KeyInfo]:
        async with _database(_settings(data_dir)) as db:
            return await Accounts(db).list_keys()

    table = Table("starts with", "name", "owner", "created", "revoked", "id", box=None)
    for key in _run(run()):
        revoked = f"{key.revoked_at:%Y-%m-%d}" if key.revoked_at else ""
        created = f"{key.created_at:%Y-%m-%d}"
        table.add_row(key.prefix, escape(key.name), escape(key.owner), created, revoked, key.id)
    table.columns[0].no_wrap = True
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[
        str,
        typer.Argument(
            help="The key's id, or the characters it starts with (as `keys ls` shows them).",
            show_default=False,
        ),
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key at once: requests and studio sessions signed by it get 401 from then on."""
    from imagemill.db.accounts import Accounts
    from imagemill.jobs.service import utcnow

    async def run() -> KeyInfo:
        async with _database(_settings(data_dir)) as db:
            return await Accounts(db).revoke_key(key, utcnow())

    revoked = _run(run())
    owner = escape(revoked.owner)
    err_console.print(f"revoked key {escape(revoked.name)!r} ({revoked.prefix}…) of {owner!r}")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDirOption = None) -> None:
    """Bring the database schema to the latest version (the server also does this at start)."""
    from sqlalchemy.engine import make_url

    from imagemill.db.migrate import current_revision

    settings = _settings(data_dir)

    async def run() -> str | None:
        async with _database(settings) as db:
            return await current_revision(db)

    revision = _run(run())
    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    console.print(f"database {url} at revision {revision}", highlight=False, soft_wrap=True)
