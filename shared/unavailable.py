"""The exceptions that mean "a datastore cannot be reached right now", as opposed to a bug or bad data.

The API answers them with 503 and `Retry-After`; a worker backs off and retries. One tuple, so that every
process draws the line in the same place.
"""

from __future__ import annotations

import asyncpg
import redis.exceptions

STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError, TimeoutError,
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    # SQLSTATE 57P01/57P02: the server ended the session because it is shutting down or recovering from a crash.
    asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
    # A connection the server closed in the middle of an operation (a fast shutdown) can be left in a state
    # asyncpg refuses to use: "cannot switch to state …; another operation is in progress".
    asyncpg.exceptions.InternalClientError,
    # SQLSTATE 25006: PostgreSQL takes no writes right now (a failover that landed on a standby, a provider's
    # read-only mode on a full disk). The primary, the store that takes writes, is away: the same write
    # succeeds once it is back, so it is answered 503, a job goes back to the queue, a worker waits.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
)
# What PostgreSQL answers while it is being operated on (a cancelled statement) or short of resources (disk,
# memory, connections), and to a transaction that lost a race (serialization failure, deadlock): the same
# statement succeeds later. A worker retries these as it retries STORE_UNAVAILABLE; any other PostgreSQL
# error is about the statement or its data, and retrying it unchanged can never succeed.
POSTGRES_TRANSIENT: tuple[type[Exception], ...] = (
    asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)
