"""Who is calling: API keys (hashed, scoped, expiring, revocable) and OIDC/JWT bearer tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from civicmesh.access import Caller, is_admin

__all__ = ["ExchangeCaller", "is_admin"]  # is_admin lives in civicmesh.access; rooms still import it here

ROLES = {"platform_admin", "org_admin", "data_steward", "analyst"}
# What a key may be used for; "*" is every scope.
SCOPES = {"*", "entities:read", "entities:write", "exchange", "ledger", "citizen", "iot", "alerts", "feasibility"}
KEY_PREFIX = "cmk"
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


@dataclass(frozen=True)
class ExchangeCaller(Caller):
    """A caller with what the exchange knows beyond the gate's seam: how it proved itself and why it asks."""

    scopes: frozenset[str] = frozenset({"*"})
    via: str = "api-key"
    purpose: str | None = None
    credential: str | None = None

    def may(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


def new_key() -> tuple[str, str, str]:
    """(key id, the full secret key shown once, the stored hash). Keys carry 256 bits of randomness."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    # A random 256-bit secret needs no slow hash (nothing to brute force); SHA-256 keeps every request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(text: str) -> tuple[str, str] | None:
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def key_matches(row: dict[str, Any], secret: str) -> bool:
    return hmac.compare_digest(row["secret_hash"], hash_secret(secret))


def key_problem(row: dict[str, Any] | None, secret: str, now: datetime) -> str | None:
    """Why a presented key is not accepted, or None. One message for unknown and wrong keys (no oracle)."""
    if row is None or not key_matches(row, secret):
        return "the API key is not valid"
    if row["revoked_at"]:
        return f"the API key {row['id']} was revoked at {row['revoked_at']}"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"].replace("Z", "+00:00")) <= now:
        return f"the API key {row['id']} expired at {row['expires_at']}"
    return None


class JwtVerifier:
    """Verifies bearer tokens against one issuer's JWKS: signature, issuer, audience, expiry. No `alg: none`."""

    def __init__(self, issuer: str, audience: str, jwks: dict[str, Any], *, leeway: float = 30.0) -> None:
        import jwt

        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []):
            key = jwt.PyJWK(jwk)
            self.keys[jwk.get("kid", "")] = key

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; raises ValueError saying precisely what is wrong."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ValueError(f"the bearer token is not a JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in JWT_ALGORITHMS:
            raise ValueError(f"JWT algorithm {alg!r} is not accepted (use one of {JWT_ALGORITHMS})")
        key = self.keys.get(header.get("kid", ""))
        if key is None:
            raise ValueError(f"JWT key id {header.get('kid')!r} is not in the configured JWKS")
        try:
            return jwt.decode(token, key=key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                              leeway=self.leeway, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise ValueError("the JWT has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise ValueError(f"the JWT audience is not {self.audience!r}") from exc
        except jwt.InvalidIssuerError as exc:
            raise ValueError(f"the JWT issuer is not {self.issuer!r}") from exc
        except jwt.PyJWTError as exc:
            raise ValueError(f"the JWT was rejected: {exc}") from exc


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
