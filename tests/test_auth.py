"""API keys (format, prefix, hash) and signed asset-link tokens."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from imagemill.auth import KEY_PREFIX, asset_token, check_asset_token, hash_key, new_key


def test_new_key_format() -> None:
    key = new_key()

    assert KEY_PREFIX == "im_"
    assert re.fullmatch(r"im_[A-Za-z0-9_-]{43}", key.plaintext), key.plaintext
    assert key.prefix == key.plaintext[:10]
    assert key.prefix.startswith("im_")


def test_only_the_hash_is_kept_and_it_is_sha256() -> None:
    key = new_key()

    assert key.key_hash == hashlib.sha256(key.plaintext.encode()).hexdigest()
    assert key.key_hash == hash_key(key.plaintext)
    assert re.fullmatch(r"[0-9a-f]{64}", key.key_hash)
    assert key.plaintext not in key.key_hash


def test_keys_are_unique() -> None:
    keys = [new_key() for _ in range(50)]

    assert len({k.plaintext for k in keys}) == 50
    assert len({k.key_hash for k in keys}) == 50


def test_hash_key_is_deterministic_and_sensitive() -> None:
    assert hash_key("im_abc") == hash_key("im_abc")
    assert hash_key("im_abc") != hash_key("im_abd")


def test_asset_token_is_short_url_safe_and_deterministic() -> None:
    token = asset_token("owner-secret", "ast_1")

    assert token == asset_token("owner-secret", "ast_1")
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", token), "18 bytes of MAC, URL-safe, no padding"
    assert len(base64.urlsafe_b64decode(token)) == 18


def test_asset_token_is_bound_to_owner_and_asset() -> None:
    token = asset_token("owner-secret", "ast_1")

    assert token != asset_token("owner-secret", "ast_2")
    assert token != asset_token("other-secret", "ast_1")


def test_check_asset_token_accepts_the_right_token_only() -> None:
    token = asset_token("owner-secret", "ast_1")
    tampered = ("A" if token[0] != "A" else "B") + token[1:]

    assert check_asset_token("owner-secret", "ast_1", token)
    assert not check_asset_token("owner-secret", "ast_1", tampered)
    assert not check_asset_token("owner-secret", "ast_2", token)
    assert not check_asset_token("other-secret", "ast_1", token)
    assert not check_asset_token("owner-secret", "ast_1", "")
    assert not check_asset_token("owner-secret", "ast_1", token[:-1])


def test_check_asset_token_rejects_a_non_ascii_token() -> None:
    # Tokens arrive from a URL query string: anything can be in there.
    try:
        accepted = check_asset_token("owner-secret", "ast_1", "é" * 24)
    except TypeError as exc:
        pytest.fail(
            "check_asset_token must answer False for a non-ASCII token, not raise "
            f"(hmac.compare_digest on str accepts ASCII only): {exc}"
        )
    assert accepted is False
