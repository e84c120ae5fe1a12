"""The `scanroute` command. Heavy imports happen inside each sub-command, so `scanroute edge` stays lean."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from shared.settings import SERVICES_ENV, ConfigError, ControlPlaneSettings

PLANS = ("free", "developer", "scale", "enterprise")


def _configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")


def control_plane_server(settings: ControlPlaneSettings) -> dict[str, Any]:
    """uvicorn's options for the control plane, as every start path (`scanroute control-plane`, under
    `scanroute up` or compose) serves it."""
    from control_plane.api.slow_clients import protocol_with_deadline
    from shared.settings import CONTROL_PLANE_SHUTDOWN_S

    host, port = settings.bind
    # No reverse proxy is assumed in front: slow or idle clients are cut off here (docs/security.md).
    # X-Forwarded-For/-Proto are believed from CONTROL_PLANE_TRUSTED_PROXIES only, never uvicorn's hidden
    # FORWARDED_ALLOW_IPS (docs/operations.md).
    return {"host": host, "port": port, "loop": "uvloop", "http": protocol_with_deadline(settings.request_read_timeout),
            "limit_concurrency": settings.max_connections, "access_log": False, "log_level": "info",
            "timeout_graceful_shutdown": math.ceil(CONTROL_PLANE_SHUTDOWN_S),
            "proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}


def cmd_control_plane(args: argparse.Namespace) -> int:
    import uvicorn

    settings = ControlPlaneSettings.from_env()
    uvicorn.run("control_plane.api.app:app_from_env", factory=True, **control_plane_server(settings))
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    from shared.settings import EdgeSettings

    settings = EdgeSettings.from_env()
    workers = settings.workers if args.workers is None else args.workers
    if args.server == "protocol":
        from edge.server import run

        run(settings, workers=workers)
        return 0
    import uvicorn

    from edge.asgi_protocol import UVICORN_OPTIONS
    from shared.listen import inherited

    host, port = settings.bind
    sock = inherited(settings.bind)  # from `scanroute up` (shared/listen.py)
    # proxy_headers off: the edge itself reads X-Forwarded-For, from TRUSTED_PROXIES only, and never from a
    # trailer field (docs/edge.md).
    uvicorn.run("edge.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                fd=sock.fileno() if sock is not None else None,
                loop="uvloop", access_log=False, log_level="info", **UVICORN_OPTIONS,
                timeout_graceful_shutdown=math.ceil(settings.drain_timeout),
                timeout_keep_alive=math.ceil(settings.keepalive_timeout),
                limit_concurrency=settings.max_connections, backlog=4096)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import uvloop

    from control_plane.ingest.worker import serve
    from shared.settings import IngestSettings

    uvloop.run(serve(IngestSettings.from_env()))
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    import uvloop

    from control_plane.webhooks.dispatcher import serve
    from shared.settings import WebhookSettings

    uvloop.run(serve(WebhookSettings.from_env()))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    import uvloop

    from control_plane.jobs.worker import serve
    from shared.settings import JobSettings

    uvloop.run(serve(JobSettings.from_env()))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from control_plane.cli.migrate import migrate_url
    from shared.settings import Stores

    stores = Stores.from_env()
    applied = asyncio.run(migrate_url(stores.database_url))
    print(f"applied {', '.join(applied)}" if applied else "database is up to date")
    return 0


async def _create_key(database_url: str, org: str, scopes: list[str], livemode: bool) -> dict[str, object]:
    from control_plane.services.keys import create_key, ensure_org
    from shared.database import connect

    conn = await connect(database_url)
    try:
        async with conn.transaction():
            org_id = await ensure_org(conn, org)
            key = await create_key(conn, org_id, livemode=livemode, scopes=scopes, name="cli")
    finally:
        await conn.close()
    return {"org_id": org_id, "key": key.secret, "scopes": key.scopes}


def cmd_keys_create(args: argparse.Namespace) -> int:
    from control_plane.services.keys import SCOPES
    from shared.settings import Stores

    # Only a missing --scopes means every scope: `--scopes "$SCOPES"` with the variable empty must not mint a
    # key that can mint further keys.
    scopes = list(SCOPES) if args.scopes is None else [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes:
        print(f"error: --scopes is empty; give at least one of {', '.join(SCOPES)}, or leave --scopes out for all",
              file=sys.stderr)
        return 2
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        print(f"error: unknown scopes {', '.join(unknown)}; choose from {', '.join(SCOPES)}", file=sys.stderr)
        return 2
    stores = Stores.from_env()
    created = asyncio.run(_create_key(stores.database_url, args.org, scopes, not args.test))
    if args.json:
        print(json.dumps(created))
    else:
        print(f"organisation {created['org_id']}\nAPI key (shown once): {created['key']}\n"
              f"scopes: {', '.join(scopes)}")
    return 0


async def _create_user(database_url: str, org: str, email: str, role: str, password: str) -> dict[str, object]:
    from control_plane.services.keys import ensure_org
    from control_plane.services.users import create_user
    from shared.database import connect

    conn = await connect(database_url)
    try:
        async with conn.transaction():
            org_id = await ensure_org(conn, org)
            user = await create_user(conn, org_id, email, role, password)
    finally:
        await conn.close()
    return {"id": user.id, "org_id": user.org_id, "email": user.email, "role": user.role}


def cmd_users_create(args: argparse.Namespace) -> int:
    from shared.problems import Problem
    from shared.settings import Stores

    if not args.password_stdin:
        print("error: give the password on standard input with --password-stdin", file=sys.stderr)
        return 2
    # One line, as `docker login --password-stdin` reads it: the trailing newline is not part of the password.
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    stores = Stores.from_env()
    try:
        created = asyncio.run(_create_user(stores.database_url, args.org, args.email, args.role, password))
    except Problem as problem:
        print(f"error: {problem.detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(created))
    else:
        print(f"user {created['id']} ({created['email']}, {created['role']}) in organisation {created['org_id']}")
    return 0


def cmd_orgs_set_plan(args: argparse.Namespace) -> int:
    from shared.database import connect
    from shared.settings import Stores

    stores = Stores.from_env()

    async def set_plan() -> str:
        conn = await connect(stores.database_url)
        try:
            result: str = await conn.execute("UPDATE organisations SET plan = $2 WHERE id = $1",
                                             args.org_id, args.plan)
            return result
        finally:
            await conn.close()

    if asyncio.run(set_plan()) == "UPDATE 0":
        print(f"error: no organisation {args.org_id}", file=sys.stderr)
        return 1
    print(f"{args.org_id} is now on the {args.plan} plan")
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from control_plane.cli.dead_letters import run_dead_letters

    return run_dead_letters(args)


def cmd_up(args: argparse.Namespace) -> int:
    from control_plane.cli.supervisor import run_stack

    return run_stack()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="scanroute", description="Dynamic QR codes for print at volume.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything on this machine").set_defaults(run=cmd_up)
    sub.add_parser("control-plane", help="the admin API").set_defaults(run=cmd_control_plane)
    edge = sub.add_parser("edge", help="the redirect edge")
    edge.add_argument("--workers", type=int, help="processes, each with its own cache (default: EDGE_WORKERS, 1)")
    edge.add_argument("--server", choices=("protocol", "asgi"), default="protocol",
                      help="protocol: the edge's own HTTP/1.1 server (default); asgi: the ASGI app under uvicorn")
    edge.set_defaults(run=cmd_edge)
    sub.add_parser("ingest", help="the scan ingest worker").set_defaults(run=cmd_ingest)
    sub.add_parser("webhooks", help="the webhook dispatcher").set_defaults(run=cmd_webhooks)
    sub.add_parser("jobs", help="the export/import worker").set_defaults(run=cmd_jobs)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create an organisation if needed and an API key")
    create.add_argument("--org", required=True, help="organisation name")
    create.add_argument("--scopes", help="comma-separated scopes (default: all)")
    create.add_argument("--test", action="store_true", help="a test-mode key (qr_test_…)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=cmd_keys_create)
    users = sub.add_parser("users", help="dashboard users").add_subparsers(dest="action", required=True)
    user = users.add_parser("create", help="create an organisation if needed and a dashboard user")
    user.add_argument("--org", required=True, help="organisation name")
    user.add_argument("--email", required=True, help="the address the user signs in with")
    user.add_argument("--role", choices=("owner", "editor", "viewer"), default="owner",
                      help="viewer reads; editor also writes codes and groups; owner also keys, webhooks, users")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.add_argument("--json", action="store_true", help="print JSON")
    user.set_defaults(run=cmd_users_create)
    orgs = sub.add_parser("orgs", help="organisations").add_subparsers(dest="action", required=True)
    plan = orgs.add_parser("set-plan", help="change an organisation's plan")
    plan.add_argument("org_id")
    plan.add_argument("plan", choices=PLANS)
    plan.set_defaults(run=cmd_orgs_set_plan)
    letters = sub.add_parser("dead-letters", help="scan entries the ingest worker could not store")
    letters.add_argument("action", choices=("list", "replay"))
    letters.add_argument("ids", nargs="*", type=int, help="replay only these (default: every waiting one)")
    letters.add_argument("--all", action="store_true", help="list replayed ones too")
    letters.add_argument("--json", action="store_true", help="print JSON")
    letters.set_defaults(run=cmd_dead_letters)
    add_job_commands(sub)
    return top


def add_job_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`export` and `import`; their modules load only when one of them runs."""

    def lazy(name: str) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            from control_plane.cli import jobs

            command: Callable[[argparse.Namespace], int] = getattr(jobs, name)
            return command(args)

        return run

    from control_plane.cli.job_arguments import add_export_arguments, add_import_arguments

    add_export_arguments(sub.add_parser("export", help="export codes (label sheets, images, CSV) to a file"),
                         lazy("cmd_export"))
    add_import_arguments(sub.add_parser("import", help="create codes from a CSV file (all or nothing)"),
                         lazy("cmd_import"))


def _stack_hint(exc: ConfigError) -> str | None:
    """Why a store URL is missing in a folder where `scanroute up` ran: its private PostgreSQL and Redis (and
    .scanroute/services.env, which names them) exist only while it is up (docs/operations.md)."""
    if exc.variable not in ("DATABASE_URL", "REDIS_URL") or not SERVICES_ENV.parent.is_dir() \
            or SERVICES_ENV.is_file():
        return None
    return ("hint: the private PostgreSQL and Redis in .scanroute/ run only while `make run` (`scanroute up`) is "
            "up: start it in another terminal, or set DATABASE_URL and REDIS_URL")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging()
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        if hint := _stack_hint(exc):
            print(hint, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _operational(exc):
            raise
        # An unreachable database or Redis, a wrong password, an address in use: the operator's to fix, and one
        # line says what; a traceback would only bury it.
        print(f"error: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1


def _operational(exc: Exception) -> bool:
    """Whether `exc` is about this machine or its stores (shared/unavailable.py, plus refused credentials and a
    database that does not exist) rather than a bug; imported only now, so that `scanroute edge` stays lean."""
    import asyncpg

    from shared.unavailable import STORE_UNAVAILABLE

    refused = (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError)
    return isinstance(exc, STORE_UNAVAILABLE + refused)


if __name__ == "__main__":
    sys.exit(main())
