"""The service without its security headers, for bench/serving.py's ``unsecured`` scenario.

On ``PYTHONPATH``, Python imports this module at start-up, before the service. It turns each
web layer's header hook into a no-op, so that the ``cached`` and ``unsecured`` servers differ
only by the headers: ``security_headers`` (security.py) for the five non-Django layers, which
their hooks import by name after this runs; for Django, the response halves of the middleware
that write them (SecurityMiddleware's request half, the HTTPS redirect, stays).
``BENCH_PACKAGE`` names the service's package.
"""

import importlib
import os
from typing import Any


def _none(**_: Any) -> dict[str, str]:
    return {}


def _unchanged(self: object, request: object, response: Any) -> Any:
    return response


try:
    security = importlib.import_module(f"{os.environ['BENCH_PACKAGE']}.security")
except ModuleNotFoundError:  # Django: the headers come from Django's middleware
    from django.middleware import clickjacking, csp
    from django.middleware import security as django_security

    django_security.SecurityMiddleware.process_response = _unchanged  # type: ignore[method-assign]
    csp.ContentSecurityPolicyMiddleware.process_response = _unchanged  # type: ignore[method-assign]
    clickjacking.XFrameOptionsMiddleware.process_response = _unchanged  # type: ignore[method-assign]
else:
    security.security_headers = _none
