"""Django's PostgreSQL backend, failing fast while the database cannot be reached.

While the database is down, Django's pool (psycopg_pool) makes each request wait up to
DB_POOL_TIMEOUT for a connection it cannot make, holding one of the server's few threads all
that time: with enough requests every thread waits, and the liveness probe queues behind them.
Here a request stops waiting as soon as the pool fails to open a connection, and the requests
that follow fail at once (503, with Retry-After: errors.py) while one request every
``COOL_DOWN`` seconds tries the database again, until one succeeds. That request connects
directly, and once the database answers it replaces the pool: psycopg_pool retries a failed
connection after a delay that doubles each time (1, 2, 4 s… for up to five minutes), and would
otherwise leave the service failing for as long again after the database is back.

Without the pool (DB_POOL_DISABLED), connections are made with the class the settings give in
OPTIONS["connection_class"] (``command_timeout.py``: each wait for the server bounded), as the
pool makes its own.
"""

import threading
import time
from typing import Any

from django.db.backends.postgresql import base
from psycopg import Connection, IsolationLevel, OperationalError
from psycopg_pool import ConnectionPool, PoolTimeout

#: Seconds after a failed connection during which requests fail without trying.
COOL_DOWN = 1.0
#: How often a request waiting for the pool checks whether the pool failed to connect meanwhile.
POLL = 0.1


class CircuitBreaker:
    """Closed while connections succeed; open after a failure, with one trial per cool-down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._trial_running = False

    def enter(self) -> bool:
        """Let the caller try (returning whether it is the trial), or raise while open."""
        with self._lock:
            if self._failed_at is None:
                return False
            if self._trial_running or time.monotonic() - self._failed_at < COOL_DOWN:
                raise OperationalError("the database could not be reached a moment ago; not trying again yet")
            self._trial_running = True
            return True

    def record(self, *, succeeded: bool) -> None:
        with self._lock:
            self._failed_at = None if succeeded else time.monotonic()

    def end_trial(self) -> None:
        with self._lock:
            self._trial_running = False


#: One per database alias, shared by the threads (each has a DatabaseWrapper of its own).
_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker(alias: str) -> CircuitBreaker:
    with _BREAKERS_LOCK:
        return _BREAKERS.setdefault(alias, CircuitBreaker())


def _connection_errors(pool: ConnectionPool[Any]) -> int:
    return pool.get_stats().get("connections_errors", 0)


def borrow(pool: ConnectionPool[Any]) -> Any:
    """Take a connection from the pool, waiting up to its timeout, but no longer than it takes
    the pool to fail to open one."""
    errors = _connection_errors(pool)
    deadline = time.monotonic() + pool.timeout
    while True:
        try:
            return pool.getconn(timeout=max(min(POLL, deadline - time.monotonic()), 0.001))
        except PoolTimeout:
            if time.monotonic() >= deadline:
                raise
            if _connection_errors(pool) > errors:
                raise OperationalError("the pool could not open a connection to the database") from None


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's own, with a circuit breaker around getting a connection."""

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        circuit = breaker(self.alias)
        trial = circuit.enter()
        try:
            connection = self._new_connection(conn_params, trial=trial)
        except OperationalError:
            circuit.record(succeeded=False)
            raise
        else:
            circuit.record(succeeded=True)
        finally:
            if trial:
                circuit.end_trial()
        return connection

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        # What _new_connection connects with, not a libpq parameter.
        params.pop("connection_class", None)
        return params

    def _new_connection(self, conn_params: dict[str, Any], *, trial: bool) -> Any:
        pool = self.pool
        if pool is not None and trial:
            # Raises while the database is still down; then a new pool connects at once.
            self.Database.connect(**conn_params).close()
            self.close_pool()
            pool = self.pool
        # Django's own, with borrow() for the pool's getconn() and, without a pool, the class of
        # OPTIONS["connection_class"] (a command timeout: settings) for psycopg's connect().
        isolation_level = self.settings_dict["OPTIONS"].get("isolation_level")
        self.isolation_level = IsolationLevel(isolation_level or IsolationLevel.READ_COMMITTED)
        if pool is None:
            connection_class = self.settings_dict["OPTIONS"].get("connection_class", Connection)
            connection = connection_class.connect(**conn_params)
        else:
            pool.open()
            connection = borrow(pool)
        if isolation_level is not None:
            connection.isolation_level = self.isolation_level
        return connection
