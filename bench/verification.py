"""Verification: what checking a bearer token costs in-process, for a new token and a repeated one.

A FastAPI service rendered with ``auth=oidc`` runs this in its own environment: its
``auth.Verifier``, over a key set of one RSA key (RS256, as most providers sign), checks tokens
signed with that key. New tokens (each a different ``jti``) pay for the whole check: the
header, the signature, the claims. A repeated token is answered from ``VerifiedTokens``. The two
alternate within each repetition, so their ratio is taken in one run; the serving section's
``authenticated`` scenario gives the cost served, with one token reused as clients do.
"""

from __future__ import annotations

import json
from typing import Any

from bench import harness, stats
from bench.harness import Config

FRAMEWORK = "fastapi"
CALLS = 2_000

#: Run by the service's interpreter; prints the µs per verification of each kind, in turn.
SCRIPT = """
import json, sys, time, timeit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from {package}.auth import KeySet, Verifier

calls, repetitions = int(sys.argv[1]), int(sys.argv[2])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
public = {{**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "k", "alg": "RS256", "use": "sig"}}
keys = KeySet(lambda: {{"keys": [public]}}, ttl=600, refresh_interval=30)
verifier = Verifier(keys, issuer="https://id.example.com", audience="api", algorithms=frozenset({{"RS256"}}), leeway=30)
claims = {{"iss": "https://id.example.com", "aud": "api", "sub": "bench", "scope": "items:read"}}
claims["exp"] = int(time.time()) + 3600


def token(n):
    return jwt.encode({{**claims, "jti": str(n)}}, key, algorithm="RS256", headers={{"kid": "k"}})


repeated = token(-1)
verifier.verify(repeated)
times = {{"new": [], "repeated": []}}
for repetition in range(repetitions):
    fresh = iter([token(repetition * calls + n) for n in range(calls)])
    times["new"].append(timeit.timeit(lambda: verifier.verify(next(fresh)), number=calls) / calls * 1e6)
    times["repeated"].append(timeit.timeit(lambda: verifier.verify(repeated), number=calls) / calls * 1e6)
print(json.dumps(times))
"""


def measure(config: Config) -> dict[str, Any]:
    print(f"verification: {FRAMEWORK}", flush=True)
    project = harness.render(config.workdir / "verification", harness.answers_for(FRAMEWORK, auth="oidc"))
    bin_dir = harness.uv_sync(project)
    calls = CALLS // 10 if config.quick else CALLS
    repetitions = max(config.repetitions, 1)
    script = SCRIPT.format(package=harness.PACKAGE)
    output = harness.run([str(bin_dir / "python"), "-c", script, str(calls), str(repetitions)], project)
    times = json.loads(output)
    return {
        "framework": FRAMEWORK,
        "calls": calls,
        "new": stats.summary(times["new"]),
        "repeated": stats.summary(times["repeated"]),
        "ratio": stats.paired_ratio(times["repeated"], times["new"]),
    }
