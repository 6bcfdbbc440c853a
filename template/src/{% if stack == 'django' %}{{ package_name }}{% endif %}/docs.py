"""The switch of the OpenAPI document and its docs page: with API_DOCS off, both answer 404."""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpResponse


def when_docs_enabled[**P](view: Callable[P, HttpResponse]) -> Callable[P, HttpResponse]:
    """Serve ``view`` only while settings.API_DOCS is on (read per request, as tests change it)."""

    @wraps(view)
    def switched(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not settings.API_DOCS:
            raise Http404
        return view(*args, **kwargs)

    return switched
