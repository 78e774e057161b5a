"""``imagemill models``, ``imagemill keys`` and ``imagemill db``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from imagemill.specs import ModelSpec
from imagemill.spend.limits import KeyLimits

if TYPE_CHECKING:
    from imagemill.db.accounts import KeyInfo
    from imagemill.db.budgets import BudgetState
    from imagemill.db.engine import Database
    from imagemill.spend.budgets import Limit

from imagemill.cli.common import (
    ApiKeyOption,
    DataDirOption,
    ServerOption,
    _database,
    _run,
    _settings,
    _with_client,
    app,
    budgets_app,
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


KeyArgument = Annotated[
    str,
    typer.Argument(
        help="The key's id, or the characters it starts with (as `keys ls` shows them).",
        show_default=False,
    ),
]
RequestsOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="Requests a minute the key may make (429 past it).", show_default=False
    ),
]
ImagesOption = Annotated[
    int | None,
    typer.Option(min=1, help="Images a minute the key may have made.", show_default=False),
]
JobsOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="Jobs the key may have queued or running at once.", show_default=False
    ),
]
BudgetOption = Annotated[
    str | None,
    typer.Option(
        help="A spending limit in US dollars per UTC period: '20/month', '5/day', "
        "'50/week' or '100/total'.",
        show_default=False,
    ),
]
KeyTarget = Annotated[
    str | None,
    typer.Option("--key", help="The key's id or first characters (`keys ls`).", show_default=False),
]
OwnerTarget = Annotated[
    str | None,
    typer.Option(
        "--owner", help="An owner's name: all its keys' spending together.", show_default=False
    ),
]


def _limit(text: str) -> Limit:
    from imagemill.spend.budgets import parse_limit

    try:
        return parse_limit(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--budget'") from exc


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
    budget: BudgetOption = None,
    requests_per_minute: RequestsOption = None,
    images_per_minute: ImagesOption = None,
    concurrent_jobs: JobsOption = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin", help="The key may also manage every owner's budgets (`/v1/admin`)."
        ),
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key and print it. It is shown this once: only its hash is stored."""
    from imagemill.auth import new_key
    from imagemill.db.accounts import Accounts
    from imagemill.db.budgets import Budgets
    from imagemill.jobs.service import utcnow

    limit = _limit(budget) if budget is not None else None
    limits = KeyLimits(requests_per_minute, images_per_minute, concurrent_jobs)

    async def run() -> tuple[str, str]:
        async with _database(_settings(data_dir)) as db:
            accounts = Accounts(db)
            account = await accounts.owner_named(owner or name, utcnow())
            key = new_key()
            key_id = await accounts.add_key(
                account.id, name, key.prefix, key.key_hash, utcnow(), admin=admin
            )
            if limits != KeyLimits():
                await accounts.set_limits(key_id, limits)
            if limit is not None:
                await Budgets(db).set(key_id, account.id, limit, utcnow())
            return account.name, key.plaintext

    owner_name, plaintext = _run(run())
    spending = f", budget {limit}" if limit is not None else ""
    err_console.print(
        f"created {'admin ' if admin else ''}key {escape(name)!r} for owner "
        f"{escape(owner_name)!r}{spending}. Copy it now, it is not shown again:"
    )
    console.print(plaintext, highlight=False, soft_wrap=True)


@keys_app.command("limits")
def keys_limits(
    key: KeyArgument,
    requests_per_minute: RequestsOption = None,
    images_per_minute: ImagesOption = None,
    concurrent_jobs: JobsOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a key's rate limits, all at once: a limit left out is lifted (none given:
    every limit lifted). Past one, its requests get 429 with Retry-After."""
    from imagemill.db.accounts import Accounts

    limits = KeyLimits(requests_per_minute, images_per_minute, concurrent_jobs)

    async def run() -> KeyInfo:
        async with _database(_settings(data_dir)) as db:
            accounts = Accounts(db)
            found = await accounts.find_key(key)
            await accounts.set_limits(found.id, limits)
            return found

    found = _run(run())
    err_console.print(f"key {escape(found.name)!r} ({found.prefix}…): {_limits_text(limits)}")


def _limits_text(limits: KeyLimits) -> str:
    parts = [
        f"{limits.requests_per_minute} requests a minute" if limits.requests_per_minute else "",
        f"{limits.images_per_minute} images a minute" if limits.images_per_minute else "",
        f"{limits.concurrent_jobs} jobs in flight" if limits.concurrent_jobs else "",
    ]
    return ", ".join(p for p in parts if p) or "no rate limits"


@keys_app.command("ls")
def keys_ls(data_dir: DataDirOption = None) -> None:
    """List every key: its id, name, owner, first characters, whether it is revoked or an
    admin key, and its rate limits."""
    from imagemill.db.accounts import Accounts

    async def run() -> list[KeyInfo]:
        async with _database(_settings(data_dir)) as db:
            return await Accounts(db).list_keys()

    table = Table("starts with", "name", "owner", "created", "revoked", "id", box=None)
    keys = _run(run())
    notes = []
    for key in keys:
        revoked = f"{key.revoked_at:%Y-%m-%d}" if key.revoked_at else ""
        created = f"{key.created_at:%Y-%m-%d}"
        table.add_row(key.prefix, escape(key.name), escape(key.owner), created, revoked, key.id)
        special = ["admin"] if key.admin else []
        if key.limits != KeyLimits():
            special.append(_limits_text(key.limits))
        if special:
            notes.append(f"{key.prefix}… ({escape(key.name)}): {'; '.join(special)}")
    table.columns[0].no_wrap = True
    console.print(table)
    for note in notes:  # below the table, which has no room for them at 80 columns
        console.print(note, highlight=False, soft_wrap=True)


@keys_app.command("revoke")
def keys_revoke(
    key: KeyArgument,
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


# -- budgets ----------------------------------------------------------------------------------


@budgets_app.command("set")
def budgets_set(
    limit: Annotated[
        str,
        typer.Argument(
            help="US dollars per UTC period: '20/month', '5/day', '50/week', '100/total'.",
            show_default=False,
        ),
    ],
    key: KeyTarget = None,
    owner: OwnerTarget = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set (or change) the budget of a key or an owner. What was spent this period still
    counts against the new limit."""
    from imagemill.db.budgets import Budgets
    from imagemill.jobs.service import utcnow

    parsed = _limit(limit)

    async def run() -> BudgetState:
        async with _database(_settings(data_dir)) as db:
            scope, owner_id = await _target(db, key, owner)
            return await Budgets(db).set(scope, owner_id, parsed, utcnow())

    _print_budgets([_run(run())])


@budgets_app.command("ls")
def budgets_ls(data_dir: DataDirOption = None) -> None:
    """List every budget: its limit, and what its current period spent and holds."""
    from imagemill.db.budgets import Budgets
    from imagemill.jobs.service import utcnow

    async def run() -> list[BudgetState]:
        async with _database(_settings(data_dir)) as db:
            return await Budgets(db).all(utcnow())

    _print_budgets(_run(run()))


@budgets_app.command("rm")
def budgets_rm(
    key: KeyTarget = None, owner: OwnerTarget = None, data_dir: DataDirOption = None
) -> None:
    """Remove the budget of a key or an owner (what it spent is kept: set again in the
    same period, it counts)."""
    from imagemill.db.budgets import Budgets

    async def run() -> bool:
        async with _database(_settings(data_dir)) as db:
            scope, _ = await _target(db, key, owner)
            return await Budgets(db).remove(scope)

    if not _run(run()):
        err_console.print("[bold red]error:[/] no budget is set there")
        raise typer.Exit(1)
    err_console.print("budget removed")


async def _target(db: Database, key: str | None, owner: str | None) -> tuple[str, str]:
    """The scope (key or owner id) and owner id that ``--key`` or ``--owner`` names."""
    from imagemill.db.accounts import Accounts

    if (key is None) == (owner is None):
        raise typer.BadParameter("give one of --key or --owner")
    accounts = Accounts(db)
    if key is not None:
        found = await accounts.find_key(key)
        return found.id, (await accounts.find_owner(found.owner)).id
    named = await accounts.find_owner(owner or "")
    return named.id, named.id


def _print_budgets(states: list[BudgetState]) -> None:
    from imagemill.spend.budgets import to_usd

    table = Table("scope", "id", "limit", "spent", "reserved", "remaining", "resets", box=None)
    for state in states:
        resets = f"{state.resets_at:%Y-%m-%d %H:%M} UTC" if state.resets_at else "never"
        table.add_row(
            state.applies_to,
            state.scope,
            str(state.limit),
            f"${to_usd(state.spent_micros):.2f}",
            f"${to_usd(state.reserved_micros):.2f}",
            f"${to_usd(state.remaining_micros):.2f}",
            resets,
        )
    console.print(table)


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
