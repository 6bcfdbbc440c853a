"""Django's bare hello-world as one module, on the service's server: ``python -m hello_django --host H --port P``.

Served like the generated service's ``python -m <package>.server``: by that same module's
``serve`` (Granian, WEB_CONCURRENCY workers of its threads), from the service's environment.
"""

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

if not settings.configured:  # run as __main__, the server's workers import it again
    settings.configure(
        DEBUG=False,
        SECRET_KEY="hello-world-benchmark-only-not-a-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="hello_django",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )


def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "world"})


urlpatterns = [path("", hello)]
application = get_wsgi_application()


if __name__ == "__main__":
    from orders_api.server import serve  # the rendered service the bench runs this beside

    serve("hello_django:application")
