"""API keys, signed asset links and webhook signing secrets.

Keys look like ``im_<43 random chars>``; only their sha256 is stored (they carry 256
bits of entropy, so a slow hash adds nothing). Asset links handed to clients that
cannot send a header (the OpenAI-compatible ``url`` format) carry an HMAC token
bound to the owner and asset: they never expire, and they open that asset only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "im_"


@dataclass(frozen=True, slots=True)
class NewKey:
    plaintext: str  # shown once, never stored
    prefix: str
    key_hash: str


def new_key() -> NewKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(plaintext, plaintext[:10], hash_key(plaintext))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def asset_token(owner_secret: str, asset_id: str) -> str:
    mac = hmac.new(owner_secret.encode(), f"asset:{asset_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:18]).decode()


def check_asset_token(owner_secret: str, asset_id: str, token: str) -> bool:
    return hmac.compare_digest(asset_token(owner_secret, asset_id).encode(), token.encode())


def webhook_secret(owner_secret: str) -> str:
    """The owner's webhook signing secret, in the Standard Webhooks form ``whsec_<base64>``.

    Derived from the owner's own secret (not stored apart), so it is stable and one
    owner's never signs another's deliveries.
    """
    key = hmac.new(owner_secret.encode(), b"webhooks", hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(key).decode()
