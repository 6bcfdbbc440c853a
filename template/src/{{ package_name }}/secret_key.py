"""What production accepts as SECRET_KEY: long, unpredictable-looking, and not a placeholder."""

import math
import zlib
from collections import Counter

#: The key used when SECRET_KEY is unset; accepted in development and tests only.
INSECURE_SECRET_KEY = "insecure-development-key-change-me"  # noqa: S105 - refused in production

#: The shortest key accepted (a generated key has 64 characters).
MIN_LENGTH = 50
#: What the key's characters show at the least; a generated key (48 random bytes) shows ~330.
MIN_BITS = 128
#: Parts of the stand-ins people copy: this service's development key, .env.example's
#: placeholder, and the keys that project starters generate marked insecure.
PLACEHOLDERS = ("change-me", "insecure")
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def _shortest_unit(key: str) -> str:
    """The shortest string that ``key`` repeats (``key`` itself when it repeats nothing)."""
    period = next((size for size in range(1, len(key)) if key[size:] == key[:-size]), len(key))
    return key[:period]


def estimated_bits(key: str) -> float:
    """An upper bound of the key's entropy: its shortest repeating unit's characters' Shannon
    entropy, or its compressed size when smaller (a pattern with a few changes)."""
    unit = _shortest_unit(key)
    shannon = -sum(count * math.log2(count / len(unit)) for count in Counter(unit).values())
    # zlib's 2-byte header and 4-byte checksum carry nothing of the key.
    compressed = 8 * (len(zlib.compress(key.encode(), 9)) - 6)
    return min(shannon, compressed)


def weakness(key: str) -> str | None:
    """Why ``key`` cannot sign production's data, or None when it can."""
    if any(part in key.lower() for part in PLACEHOLDERS):
        return "it is a placeholder"
    if len(key) < MIN_LENGTH:
        return f"it has {len(key)} characters, fewer than {MIN_LENGTH}"
    if estimated_bits(key) < MIN_BITS:
        return "its characters repeat too much to be random"
    return None


def check_production_key(key: str) -> None:
    """Raise ValueError, saying why and how to make a good one, when ``key`` is weak."""
    reason = weakness(key)
    if reason:
        raise ValueError(f"SECRET_KEY is not fit for production ({reason}): set a random one, e.g. from {GENERATE}")
