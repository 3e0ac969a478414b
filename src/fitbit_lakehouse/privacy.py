"""Pseudonymous user keys: HMAC-SHA256 of the Fitbit Id, in Python and as a Spark column.

The same key names a user everywhere (Kafka message keys, silver/user_identity, gold, alerts), so
nothing downstream of silver needs the raw Id or a join to find it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from secrets import token_hex

from .config import Settings

log = logging.getLogger(__name__)


class PrivacyError(RuntimeError):
    """A missing secret; the message says where to put it."""

KEY_CHARS = 32   # hex characters kept of the 64-character HMAC


def user_key_secret(settings: Settings) -> str:
    """The HMAC secret: $FITBIT_USER_KEY_SECRET, else the secret `user_key_secret` (a Databricks
    secret scope, or $FITBIT_SECRET_<SCOPE>_USER_KEY_SECRET), else, where conf allows it, a random
    secret generated once for the lake and kept beside it (never a public one: with a known secret
    user_key could be reversed over the public Kaggle Ids)."""
    from .secrets import secret, where

    value = os.environ.get(settings.get("privacy.user_key_secret_env")) or secret(settings, "user_key_secret")
    if value and value in (settings.get("privacy.public_secrets") or []) \
            and not settings.get("privacy.allow_public_secret"):
        raise PrivacyError(f"The user-key secret given ({where(settings, 'user_key_secret')} or "
                           f"{settings.get('privacy.user_key_secret_env')}) is a published one: with it anyone "
                           f"can map user_key back to the public Kaggle Ids. Choose your own, or unset it to "
                           f"have one generated for the lake (privacy.allow_public_secret: true allows it).")
    if value:
        return value
    relative = settings.get("privacy.lake_secret_file")
    if not relative:
        raise PrivacyError(f"No user-key secret: put one in {where(settings, 'user_key_secret')}.")
    return _lake_secret(settings.lake_dir / relative)


def _lake_secret(path) -> str:
    """The lake's own secret, created at first use (readable by its owner only). Keep it with the
    lake: a new secret gives every user a new key."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:            # another process of the run made it first
        return _wait_for_secret(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(token_hex(32))
    log.warning("No user-key secret given: generated one for this lake in %s (set FITBIT_USER_KEY_SECRET "
                "to choose your own)", path)
    return path.read_text().strip()


def _wait_for_secret(path) -> str:
    import time

    for _ in range(100):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.05)
    raise PrivacyError(f"{path} is empty: delete it, or set FITBIT_USER_KEY_SECRET")


def user_key(fitbit_id: int | str, secret: str) -> str:
    """Stable and pseudonymous; without the secret it cannot be reversed by hashing the small
    space of 10-digit Ids."""
    message = str(int(fitbit_id)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:KEY_CHARS]


def user_key_column(fitbit_id, secret: str):
    """user_key() as a Spark expression over a bigint column (RFC 2104 spelled out with sha2), so
    Spark computes it without a Python UDF or a join."""
    from pyspark.sql import functions as F

    block = 64
    key = secret.encode()
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner_pad = bytearray(b ^ 0x36 for b in key)
    outer_pad = bytearray(b ^ 0x5C for b in key)
    message = F.col(fitbit_id).cast("string").cast("binary") if isinstance(fitbit_id, str) else \
        fitbit_id.cast("string").cast("binary")
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), message), 256))
    return F.substring(F.sha2(F.concat(F.lit(outer_pad), inner), 256), 1, KEY_CHARS)
