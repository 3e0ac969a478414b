"""Pseudonymous user keys: HMAC-SHA256 of the Fitbit Id, in Python and as a Spark column.

The same key names a user everywhere (Kafka message keys, silver/user_identity, gold, alerts), so
nothing downstream of silver needs the raw Id or a join to find it.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os

from .config import Settings

log = logging.getLogger(__name__)


class PrivacyError(RuntimeError):
    """A missing secret; the message says where to put it."""

KEY_CHARS = 32   # hex characters kept of the 64-character HMAC


def user_key_secret(settings: Settings) -> str:
    """The HMAC secret: $FITBIT_USER_KEY_SECRET, else the secret `user_key_secret`, else (where conf
    allows one) the public development secret, with a warning."""
    from .secrets import secret, where

    value = os.environ.get(settings.get("privacy.user_key_secret_env")) or secret(settings, "user_key_secret")
    if value:
        return value
    dev_secret = settings.get("privacy.user_key_dev_secret")
    if not dev_secret:
        raise PrivacyError(f"No user-key secret: put one in {where(settings, 'user_key_secret')}.")
    log.warning("No user-key secret (%s or %s): user_key uses the public development secret; set one for "
                "real data", settings.get("privacy.user_key_secret_env"), where(settings, "user_key_secret"))
    return dev_secret


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
