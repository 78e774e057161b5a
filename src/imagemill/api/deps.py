"""Request dependencies: the runtime, the calling owner, public URLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator

from imagemill.api.request_ids import add_answer_headers
from imagemill.auth import asset_token, hash_key
from imagemill.db.accounts import Owner
from imagemill.errors import Unauthorized
from imagemill.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key from `imagemill keys create`.")
# The studio's sign-in: the API key the person typed, in a cookie scripts cannot read and
# other sites' requests do not carry (HttpOnly, SameSite=Strict). It is checked like a
# bearer key on every request, so revoking the key signs the browser out.
SESSION_COOKIE = "imagemill_session"


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain
# ``def`` dependency in a thread pool, a thread hand-off on every request.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def optional_owner(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Owner | None:
    """The owner of the request's key (or studio session), its request counted against
    the key's rate limit (``TooManyRequests`` past it; the IETF headers on the answer)."""
    if credentials is not None:
        owner = await runtime.accounts.owner_for_key(hash_key(credentials.credentials))
        if owner is not None:
            return await _counted(owner, runtime)
        if runtime.settings.keys_required:
            raise Unauthorized("the API key is not valid (revoked or mistyped)")
        # Keyless server: clients that must send some key (the openai SDK) act as the local owner.
    elif session := request.cookies.get(SESSION_COOKIE):
        owner = await runtime.accounts.owner_for_key(hash_key(session))
        if owner is not None:
            return await _counted(owner, runtime)
        # a stale cookie (revoked key) is no sign-in: fall through
    if not runtime.settings.keys_required:
        local: Owner = request.app.state.local_owner
        return local
    return None


async def _counted(owner: Owner, runtime: Runtime) -> Owner:
    """``owner``, its key's request counted against the key's requests a minute."""
    if owner.key_id is not None:
        window = await runtime.rate_limits.request(owner.key_id, owner.limits)
        if window is not None:
            add_answer_headers(window.headers())
    return owner


async def current_owner(owner: Annotated[Owner | None, Depends(optional_owner)]) -> Owner:
    if owner is None:
        raise Unauthorized("this server requires an API key: send 'Authorization: Bearer <key>'")
    return owner


CurrentOwner = Annotated[Owner, Depends(current_owner)]
OptionalOwner = Annotated[Owner | None, Depends(optional_owner)]


class Links:
    """Absolute URLs for the caller, honouring ``public_url`` behind a proxy."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def asset(self, asset_id: str) -> str:
        return f"{self.base}/v1/assets/{asset_id}"

    def thumbnail(self, asset_id: str) -> str:
        return f"{self.base}/v1/assets/{asset_id}/thumbnail"

    def signed_asset(self, owner: Owner, asset_id: str) -> str:
        return f"{self.asset(asset_id)}?token={asset_token(owner.secret, asset_id)}"


async def get_links(request: Request, runtime: RuntimeDep) -> Links:
    return Links(runtime.settings.public_url or str(request.base_url))


LinksDep = Annotated[Links, Depends(get_links)]


def _key_text(value: str | None) -> str | None:
    """The key without the blanks around it, which HTTP says are not part of a value (a
    proxy may trim them: a retry must find the same key)."""
    return value.strip(" \t") if value is not None else None


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        # Visible ASCII (the IETF draft's key is a string of it), blanks around allowed.
        pattern=r"^[ \t]*[!-~](?:[ -~]*[!-~])?[ \t]*$",
        description="Repeat-safe submits: the same key and request, the same job (a "
        "different request: refused).",
    ),
    AfterValidator(_key_text),
]
