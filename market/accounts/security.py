"""Password hashing (argon2) and opaque secrets (bearer tokens, API keys, invitations)."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "agb_"
API_KEY_PREFIX = "agk_"
INVITATION_PREFIX = "agi_"

_hasher = PasswordHasher()
# verified against when the e-mail is unknown, so that both paths cost the same
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_secret(prefix: str) -> str:
    """A high-entropy secret; SHA-256 is the right hash for it (it cannot be brute-forced)."""
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
