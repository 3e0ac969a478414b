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
    """A missing, published or other secret than the lake's; the message says what to give."""

KEY_CHARS = 32   # hex characters kept of the 64-character HMAC


def user_key_secret(settings: Settings) -> str:
    """The HMAC secret: $FITBIT_USER_KEY_SECRET, else the secret `user_key_secret` (a Databricks
    secret scope, or $FITBIT_SECRET_<SCOPE>_USER_KEY_SECRET), else, where conf allows it, a random
    secret generated once for the lake and kept beside it (never a public one: with a known secret
    user_key could be reversed over the public Kaggle Ids). Never another one than the lake's keys
    were made with."""
    from .secrets import where

    value = _given_secret(settings)
    if not value:
        relative = settings.get("privacy.lake_secret_file")
        if not relative:
            raise PrivacyError(f"No user-key secret: put one in {where(settings, 'user_key_secret')}.")
        value = _lake_secret(settings.lake_dir / relative)
    _require_the_lakes_secret(settings, value)
    return value


def require_the_lakes_secret(settings: Settings) -> None:
    """Before a run starts anything: a secret given that is not the one of the lake's user keys."""
    value = _given_secret(settings)
    if value:
        _require_the_lakes_secret(settings, value)


def _given_secret(settings: Settings) -> str | None:
    from .secrets import secret, where

    value = os.environ.get(settings.get("privacy.user_key_secret_env")) or secret(settings, "user_key_secret")
    if value and value in (settings.get("privacy.public_secrets") or []) \
            and not settings.get("privacy.allow_public_secret"):
        raise PrivacyError(f"The user-key secret given ({where(settings, 'user_key_secret')} or "
                           f"{settings.get('privacy.user_key_secret_env')}) is a published one: with it anyone "
                           f"can map user_key back to the public Kaggle Ids. Choose your own, or unset it to "
                           f"have one generated for the lake (privacy.allow_public_secret: true allows it).")
    return value


FINGERPRINT_MESSAGE = b"fitbit-lakehouse user-key secret fingerprint"


def secret_fingerprint(secret: str) -> str:
    """Tells secrets apart without revealing them (an HMAC of a fixed message, not of an Id)."""
    return hmac.new(secret.encode(), FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


def _fingerprint_file(settings: Settings):
    relative = settings.get("privacy.fingerprint_file")
    return settings.lake_dir / relative if relative else None


def _require_the_lakes_secret(settings: Settings, secret: str) -> None:
    """A lake's user keys are made with one secret: another one would give the users seen from now on
    keys of another scheme (and message keys another partition) without a word."""
    path = _fingerprint_file(settings)
    try:
        kept = path.read_text().strip() if path is not None else ""
    except FileNotFoundError:
        return
    if kept and kept != secret_fingerprint(secret):
        raise _other_secret(settings)


def _other_secret(settings: Settings) -> PrivacyError:
    return PrivacyError(f"The user-key secret given is not the one the user keys of {settings.lake_dir} were made "
                        f"with: give that one again (FITBIT_USER_KEY_SECRET, or unset it if the lake generated its "
                        f"own), or start a lake with new keys (make clean-lake, or another FITBIT_LAKE_DIR).")


def knows_its_secret(settings: Settings) -> bool:
    path = _fingerprint_file(settings)
    return path is None or path.exists()


def remember_secret(settings: Settings, secret: str, known: tuple[int, str] | None = None) -> None:
    """Silver, before it writes the first user key of a lake: the secret's fingerprint is kept with it.
    A lake from before the fingerprint gives one of its stored (Id, user_key) pairs as `known`: a
    secret that does not make that key is refused."""
    path = _fingerprint_file(settings)
    if path is None or path.exists():
        return
    if known is not None and user_key(known[0], secret) != known[1]:
        raise _other_secret(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(secret_fingerprint(secret) + "\n")
    partial.replace(path)


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
    log.warning("No user-key secret given: generated one for this lake in %s (to choose your own, set "
                "FITBIT_USER_KEY_SECRET before a lake's first run)", path)
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
    """user_key() as a Spark expression over a bigint column, or of any column's text (RFC 2104 spelled
    out with sha2), so Spark computes it without a Python UDF or a join."""
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
