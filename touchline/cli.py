"""The `touchline` command: serve, worker, db, org, key, contacts, demo."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from touchline.config import Settings, get_settings

app = typer.Typer(help="Touchline: multi-step SMS and email sequences.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="key")
app.add_typer(contacts_app, name="contacts")

GRACEFUL_SHUTDOWN_SECONDS = 5
MAX_WEB_PROCESSES = 64

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _settings() -> Settings:
    from touchline.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)
    return settings


def _sessions(settings: Settings):  # type: ignore[no-untyped-def]
    from touchline.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(settings.database_url, settings))


def _print_key(org_id: object, api_key: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"organization_id": str(org_id), "api_key": api_key}))
    else:
        typer.echo(f"organization_id: {org_id}\napi_key: {api_key}\n(the key is shown only once)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from touchline.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    typer.echo("database is at the latest schema")


@org_app.command("create")
def org_create(name: str, as_json: JsonFlag = False) -> None:
    """Create an organization and print its id and a first API key."""
    from touchline.auth.service import create_api_key, create_organization
    from touchline.db import unit_of_work

    with unit_of_work(_sessions(_settings())) as session:
        org = create_organization(session, name)
        key = create_api_key(session, org.id)
    _print_key(org.id, key, as_json)


@key_app.command("create")
def key_create(
    org: Annotated[str, typer.Option("--org", help="Organization id.")], as_json: JsonFlag = False
) -> None:
    """Add an API key to an organization."""
    from touchline.auth.service import create_api_key
    from touchline.db import unit_of_work
    from touchline.models import Organization

    try:
        org_id = uuid.UUID(org)
    except ValueError:
        raise typer.BadParameter("not a UUID", param_hint="--org") from None
    with unit_of_work(_sessions(_settings())) as session:
        if session.get(Organization, org_id) is None:
            typer.echo(f"no organization {org_id}", err=True)
            raise typer.Exit(1)
        key = create_api_key(session, org_id)
    _print_key(org_id, key, as_json)


@key_app.command("revoke")
def key_revoke(key_prefix: str) -> None:
    """Revoke the key that starts with KEY_PREFIX (its first 12 characters or more)."""
    from touchline.auth.service import PREFIX_LENGTH, revoke_api_key
    from touchline.db import unit_of_work

    if len(key_prefix) < PREFIX_LENGTH:
        raise typer.BadParameter(f"give at least the first {PREFIX_LENGTH} characters")
    with unit_of_work(_sessions(_settings())) as session:
        count = revoke_api_key(session, key_prefix)
    if count == 0:
        typer.echo("no live key with that prefix", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {count} key(s)")


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter("expected ISO 8601, e.g. 2026-01-05T09:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Process what is due, then exit.")] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="With --once: the instant to process as of.")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve this worker's own /metrics on this port."),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option("--metrics-host", help="With --metrics-port; default TOUCHLINE_HOST."),
    ] = None,
) -> None:
    """Claim due step contacts, send, advance; runs until SIGTERM unless --once."""
    from touchline.worker.loop import Worker
    from touchline.worker.runner import run_forever

    settings = _settings()
    at = _parse_now(now)
    if at is not None and not once:
        raise typer.BadParameter("--now only goes with --once")
    if metrics_port is not None and once:
        raise typer.BadParameter("--metrics-port does not go with --once")
    w = Worker(_sessions(settings), settings)
    if once:
        try:
            summary = w.run_once(at)
        finally:
            w.close()
        typer.echo(summary.describe())
        return
    if metrics_port is not None:
        from touchline.counters import serve_worker_metrics

        serve_worker_metrics(metrics_host or settings.host, metrics_port, settings.metrics_token)
    run_forever(w, settings.worker_poll_seconds)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default TOUCHLINE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default TOUCHLINE_PORT.")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: run workers elsewhere.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_WEB_PROCESSES,
            help="API processes on the port. Default TOUCHLINE_WEB_CONCURRENCY (1).",
        ),
    ] = None,
) -> None:
    """Run the API: in one process with a worker thread, or with --workers N in N
    processes beside one worker process (unless --no-worker)."""
    import uvicorn

    from touchline.logs import uvicorn_log_config
    from touchline.migrate import upgrade

    settings = _settings()
    # Once, before any process serves.
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    processes = workers or settings.web_concurrency
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "log_level": settings.log_level.lower(),
        "log_config": uvicorn_log_config(settings),
        # On SIGTERM, requests still running after this long are cancelled: with every
        # database wait bounded by lock_timeout_seconds, few are left by then.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if processes == 1:
        from touchline.app import create_app

        uvicorn.run(create_app(settings, run_worker=not no_worker), **options)
        return

    from touchline import serving

    if settings.console and not settings.console_secret:
        # Made once here and inherited, so that every process accepts the same sessions.
        os.environ["TOUCHLINE_CONSOLE_SECRET"] = secrets.token_urlsafe(32)
    warning = serving.connection_budget_warning(settings, processes, not no_worker)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    worker = nullcontext() if no_worker else serving.worker_process(settings)
    with serving.shared_metrics(), worker:
        serving.serve_processes(processes, **options)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _uuid_option(value: str | None, option: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        _fail(f"{option}: not an id: {value!r}")


@contacts_app.command("import")
def contacts_import(
    file: Annotated[Path, typer.Argument(help="A UTF-8 CSV file with a header row.")],
    sequence: Annotated[
        str | None, typer.Option("--sequence", help="Also add each contact to this sequence.")
    ] = None,
    step: Annotated[
        str | None, typer.Option("--step", help="With --sequence: the start step.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="TOUCHLINE_API_KEY", help="The organization's API key."),
    ] = None,
    outcomes: Annotated[
        Path | None, typer.Option("--outcomes", help="Write each row's outcome to this CSV.")
    ] = None,
) -> None:
    """Import contacts from FILE (as POST /v1/contacts/imports), in this process, showing
    progress; then print how many rows had each outcome."""
    from touchline.logs import configure_logging
    from touchline.worker.inline_import import import_here

    if not key:
        _fail("an API key is needed: --key or TOUCHLINE_API_KEY")
    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    settings = get_settings()
    # Warnings only: the progress bar and the summary are the output.
    configure_logging(settings.model_copy(update={"log_level": "warning"}))
    report = import_here(
        _sessions(settings),
        settings,
        key,
        data,
        _uuid_option(sequence, "--sequence"),
        _uuid_option(step, "--step"),
    )
    if report.error is not None:
        _fail(report.error)
    if outcomes is not None and report.outcomes_csv is not None:
        outcomes.write_text(report.outcomes_csv, encoding="utf-8")
    typer.echo(report.describe())
    if report.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    host: Annotated[
        str | None, typer.Option(help="Where `serve` listens, for the URLs shown.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Where `serve` listens, for the URLs shown.")
    ] = None,
) -> None:
    """Create a demo organization with a known key and contacts in every state."""
    from touchline.demo import create_demo
    from touchline.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    info = create_demo(_sessions(settings), settings)
    base = f"http://{host or settings.host}:{port or settings.port}"
    typer.echo("demo organization " + ("created" if info.created else "already there"))
    typer.echo(f"API key: {info.api_key}")
    typer.echo("List Contact Sequences for a contact in two sequences:")
    typer.echo(
        f"  curl -s -X POST -H 'X-WHIPPY-KEY: {info.api_key}' "
        f"{base}/v1/contacts/{info.contact_id}/sequences"
    )
    typer.echo(f"API docs: {base}/docs")
    typer.echo(f"Console: {base}/app (sign in with the API key above)")


if __name__ == "__main__":
    app()
