"""The service without some of its per-request features, for bench/serving.py's scenarios.

On ``PYTHONPATH``, Python imports this module at start-up, before the service. It turns the
hooks of each feature named in ``BENCH_WITHOUT`` (comma-separated) into no-ops, so that two
servers differ by that feature alone; the web layers import the hooks by name after this runs.
``BENCH_PACKAGE`` names the service's package.

- ``security_headers``: ``security.security_headers`` for the five non-Django layers; for Django,
  the response halves of the middleware that write them (SecurityMiddleware's request half, the
  HTTPS redirect, stays).
- ``metrics``: ``metrics.request_started`` answers that the request is not measured, so that
  nothing is counted or timed.
"""

import importlib
import os
from typing import Any

PACKAGE = os.environ["BENCH_PACKAGE"]
WITHOUT = set(filter(None, os.environ.get("BENCH_WITHOUT", "").split(",")))


def _no_headers(**_: Any) -> dict[str, str]:
    return {}


def _unchanged(self: object, request: object, response: Any) -> Any:
    return response


def _unmeasured(method: str, path: str) -> bool:
    return False


if "security_headers" in WITHOUT:
    try:
        security = importlib.import_module(f"{PACKAGE}.security")
    except ModuleNotFoundError:  # Django: the headers come from Django's middleware
        from django.middleware import clickjacking, csp
        from django.middleware import security as django_security

        django_security.SecurityMiddleware.process_response = _unchanged  # type: ignore[method-assign]
        csp.ContentSecurityPolicyMiddleware.process_response = _unchanged  # type: ignore[method-assign]
        clickjacking.XFrameOptionsMiddleware.process_response = _unchanged  # type: ignore[method-assign]
    else:
        security.security_headers = _no_headers

if "metrics" in WITHOUT:
    importlib.import_module(f"{PACKAGE}.metrics").request_started = _unmeasured
