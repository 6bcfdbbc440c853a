"""A span for each SQL statement Django runs, through Django's own hook around them (``execute_wrapper``).

OpenTelemetry's Django instrumentation traces the requests only, and its database ones are per
driver (psycopg, sqlite3); this one traces whatever DATABASES names, with OpenTelemetry's
database conventions. ``telemetry.start_tracing`` installs it with the others.
"""

from collections.abc import Callable, Collection
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.trace import SpanKind, Tracer


class QueryInstrumentor(BaseInstrumentor):  # type: ignore[misc]  # an untyped base class (pyproject.toml)
    """Wraps the statements of every connection opened from now on, and of this thread's open ones."""

    _tracer: Tracer

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("django",)

    def _instrument(self, **kwargs: Any) -> None:
        self._tracer = trace.get_tracer(__name__, tracer_provider=kwargs.get("tracer_provider"))
        # Sent on every connect, a pooled connection's checkout included: _wrap adds the wrapper once.
        connection_created.connect(self._wrap, dispatch_uid=__name__)
        for connection in connections.all(initialized_only=True):
            self._wrap(connection=connection)

    def _uninstrument(self, **kwargs: Any) -> None:
        connection_created.disconnect(dispatch_uid=__name__)
        for connection in connections.all(initialized_only=True):
            if self._execute in connection.execute_wrappers:
                connection.execute_wrappers.remove(self._execute)

    def _wrap(self, connection: BaseDatabaseWrapper, **_: Any) -> None:
        if self._execute not in connection.execute_wrappers:
            connection.execute_wrappers.append(self._execute)

    def _execute(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        connection: BaseDatabaseWrapper = context["connection"]
        database = connection.settings_dict
        operation = sql.split(maxsplit=1)[0].upper() if sql.strip() else connection.vendor
        attributes = {
            "db.system.name": connection.vendor,
            "db.namespace": str(database["NAME"]),
            "db.operation.name": operation,
            # The statement as Django sends it, its values as placeholders.
            "db.query.text": sql,
        }
        if database.get("HOST"):
            attributes["server.address"] = database["HOST"]
        with self._tracer.start_as_current_span(operation, kind=SpanKind.CLIENT, attributes=attributes):
            return execute(sql, params, many, context)
