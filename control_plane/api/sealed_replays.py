"""Stored idempotent responses are encrypted with a key only the caller's own API key can derive.

A first response may hold a secret shown once (a new API key, a webhook signing secret). The replay
store keeps it sealed with AES-GCM under HMAC-SHA256(API key, purpose): Redis holds neither the API key
nor anything that opens the record without it, and a replay to the same key still returns the same
status and body (docs/security.md, "Idempotent replays").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PURPOSE = b"scanroute idempotent replay v1"
NONCE_BYTES = 12


def _cipher(token: str) -> AESGCM:
    return AESGCM(hmac.new(token.encode(), PURPOSE, hashlib.sha256).digest())


def seal(token: str, store_key: str, record: dict[str, Any]) -> str:
    """`record` encrypted for `token`, bound to the Redis key it is stored under."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(token).encrypt(nonce, orjson.dumps(record), store_key.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(token: str, store_key: str, sealed: str) -> dict[str, Any] | None:
    """The record, or None if it was not sealed for this token and key (or was tampered with)."""
    raw = base64.b64decode(sealed)
    try:
        plain = _cipher(token).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], store_key.encode())
    except InvalidTag:
        return None
    record: dict[str, Any] = orjson.loads(plain)
    return record
