"""The ``whistle`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.runtime.settings import SERVICES, Settings

if TYPE_CHECKING:
    from services.runtime.dlq import ParkedEvent
    from services.runtime.kafka import BrokerAuth


def _up(args: argparse.Namespace) -> int:
    from services.launcher.stack import up

    return up(
        Settings(),
        say=lambda line: print(line, flush=True),
        monitoring=args.monitoring,
        replicas=args.replicas,
    )


# How every service runs under uvicorn (the pipeline benchmark's ceiling app runs the same way).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "timeout_graceful_shutdown": 10,
    # X-Forwarded-For is believed only from WHISTLE_TRUSTED_PROXIES, by the service itself
    # (services/runtime/proxies.py); uvicorn's own default would believe it from 127.0.0.1.
    "proxy_headers": False,
    # Named, not left to uvicorn's "auto" (which falls back to asyncio's loop and h11 when
    # they are missing): both are dependencies, and a machine without them fails at start.
    "loop": "uvloop",
    "http": "httptools",
}


def _replica_counts(spec: str) -> dict[str, int]:
    from services.launcher.stack import parse_replicas

    try:
        return parse_replicas(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.runtime.logs import configure_logging
    from services.runtime.settings import ProductionSettingsError

    settings = Settings()
    configure_logging(args.service, settings.log_level)
    module = importlib.import_module(f"services.{args.service}.app")
    try:
        app = module.create_app(settings)
    except ProductionSettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    port = args.port or settings.port_of(args.service)
    uvicorn.run(app, host=settings.host, port=port, **UVICORN_OPTIONS)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from services.launcher.stack import prepare

    unknown = set(args.service) - set(SERVICES)
    if unknown:
        print(f"whistle migrate: unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    asyncio.run(prepare(Settings(), tuple(args.service or SERVICES)))
    return 0


def _token(args: argparse.Namespace) -> int:
    from services.runtime.auth import ensure_dev_keys, issue_token

    settings = Settings()
    ensure_dev_keys(settings.private_key_path, settings.public_key_path)
    try:
        token = issue_token(
            settings.private_key_path.read_bytes(),
            subject=args.subject,
            roles=args.role,
            scopes=args.scope or [],
            issuer=settings.jwt_issuer,
            audience=settings.audiences(args.service or SERVICES),
            now=datetime.now(UTC),
        )
    except ValueError as exc:
        print(f"whistle token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from services.runtime.db import command_sessions
    from services.runtime.outbox import replay

    since = datetime.fromisoformat(args.since)
    if since.tzinfo is None:
        print("whistle outbox-replay: --since needs a UTC offset, e.g. 2026-11-01T00:00Z")
        return 2

    async def run() -> int:
        async with (
            command_sessions(Settings().database_url_for(args.service)) as sessions,
            sessions() as session,
            session.begin(),
        ):
            return await replay(session, since)

    count = asyncio.run(run())
    print(f"{count} {args.service} events marked for republishing")
    return 0


def _erase(args: argparse.Namespace) -> int:
    from services.intake.erasure import REQUEST_BASIS, Erasure, erase_on_request
    from services.intake.errors import AlreadyErased, UnknownTip
    from services.runtime.db import command_sessions

    erasure = Erasure("request", args.basis or REQUEST_BASIS, args.by)

    async def run() -> str:
        async with (
            command_sessions(Settings().database_url_for("intake")) as sessions,
            sessions() as session,
            session.begin(),
        ):
            return str(
                await erase_on_request(session, args.tracking_no, erasure, datetime.now(UTC))
            )

    try:
        tip_id = asyncio.run(run())
    except UnknownTip:
        print(f"whistle erase: 未找到受理编号 {args.tracking_no}", file=sys.stderr)
        return 1
    except AlreadyErased as exc:
        print(f"whistle erase: {args.tracking_no} 的个人信息已于 {_utc(exc.erased_at)} 删除过")
        return 0
    # The event leaves through intake's outbox, with intake's next relay pass.
    print(
        f"已删除 {args.tracking_no}（线索 {tip_id}）的个人信息；"
        "调度与账本将在收到 whistle.personal_data.erased 后删除各自的副本与密钥。"
    )
    return 0


def _recompute_deadlines(args: argparse.Namespace) -> int:
    from reference.county import county_tenancy
    from services.escalation.calendar import load_calendar
    from services.escalation.recompute import recompute_provisional
    from services.runtime.clock import system_clock
    from services.runtime.db import command_sessions

    settings = Settings()
    calendar = load_calendar(settings.config_dir / "calendar.yaml", settings.timezone)
    counties = county_tenancy(settings.config_dir)

    async def run() -> int:
        async with command_sessions(settings.database_url_for("escalation")) as sessions:
            return await recompute_provisional(sessions, calendar, system_clock, counties=counties)

    count = asyncio.run(run())
    print(f"{count} provisional deadlines counted again on calendar {calendar.version}")
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from services.ledger.heads import TreeHead, load_public_key
    from services.ledger.verify import verify_export

    key_path = args.public_key or Settings().ledger_public_key_path
    try:
        key = load_public_key(key_path.read_bytes())
    except (OSError, ValueError) as exc:
        print(f"whistle ledger verify: 无法读取公钥 {key_path}：{exc}", file=sys.stderr)
        return 2
    try:
        earlier = TreeHead.from_json(json.loads(args.head.read_bytes())) if args.head else None
    except (OSError, ValueError) as exc:
        print(f"whistle ledger verify: 无法读取树头 {args.head}：{exc}", file=sys.stderr)
        return 2
    try:
        with args.export.open("rb") as export:
            report = verify_export(export, key, earlier)
    except OSError as exc:
        print(f"whistle ledger verify: 无法读取导出文件 {args.export}：{exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


def _triage(args: argparse.Namespace) -> int:
    from reference.county import ReferenceDataError
    from services.dispatch.corpus import CorpusError
    from services.dispatch.training import evaluate_corpus, train

    settings = Settings()
    config_dir = args.config_dir or settings.config_dir
    threshold = settings.triage_confidence_threshold if args.threshold is None else args.threshold
    try:
        if args.triage_command == "evaluate":
            print(evaluate_corpus(config_dir, threshold).render())
            return 0
        learned = None
        if args.console and settings.database_url:
            learned = asyncio.run(_dispatchers_labels(settings))
        elif args.console:
            print("未设置 WHISTLE_DATABASE_URL：不读取调度员的人工分类，learned.csv 保持不变。")
        trained = train(config_dir, threshold, args.history, learned)
    except (CorpusError, ReferenceDataError) as exc:
        print(f"whistle triage {args.triage_command}: 标注数据无效，未训练：", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  {reason}", file=sys.stderr)
        return 2
    print("训练前：")
    print(trained.before.render())
    print("训练后：")
    print(trained.after.render())
    print(f"新增历史工单 {trained.added} 条（history.csv 共 {trained.history} 条）。")
    if trained.learned is not None:
        print(f"调度员人工分类 {trained.learned} 条，已写入 learned.csv。")
    if trained.added or trained.learned is not None:
        print(
            "运行中的 dispatch 重新加载参考数据后启用新模型："
            "POST /v1/reference/reload，或 kill -HUP <dispatch 进程号>。"
        )
    return 0


async def _dispatchers_labels(settings: Settings) -> list[Any]:
    from services.dispatch.training import labelled_by_dispatchers
    from services.runtime.db import command_sessions

    async with (
        command_sessions(settings.database_url_for("dispatch")) as sessions,
        sessions() as session,
    ):
        return await labelled_by_dispatchers(session)


def _dept_listen(args: argparse.Namespace) -> int:
    from contracts.topics import BrokerDepartment
    from reference.county import county_tenancy
    from services.escalation.dept_listen import main

    settings = Settings()
    counties = county_tenancy(settings.config_dir)
    if args.county is not None and args.county not in counties.known:
        known = ", ".join(sorted(counties.known))
        print(f"whistle dept-listen: 未知的县 {args.county}（已配置：{known}）", file=sys.stderr)
        return 2
    return main(
        bootstrap=settings.require_kafka(),
        auth=settings.broker_auth(),
        department=BrokerDepartment.of(args.dept, args.county, counties.default),
        group=args.group,
        ack_with=args.ack_with,
        max_messages=args.max_messages,
        timezone=settings.timezone,
        token=args.token or os.environ.get("WHISTLE_DEPT_TOKEN"),
    )


def _dlq_broker() -> tuple[str, BrokerAuth] | None:
    settings = Settings()
    try:
        return settings.require_kafka(), settings.broker_auth()
    except RuntimeError as exc:
        print(f"whistle dlq: {exc}", file=sys.stderr)
        return None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _dlq_list(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from services.runtime.dlq import dlq_name, dlq_topics, parked

    broker = _dlq_broker()
    if broker is None:
        return 2
    bootstrap, auth = broker

    async def run() -> list[ParkedEvent]:
        topics = [args.topic] if args.topic else await dlq_topics(bootstrap, auth)
        return await parked(bootstrap, topics, auth)

    try:
        events = asyncio.run(run())
    except (KafkaError, OSError) as exc:
        print(f"whistle dlq list: cannot reach the broker at {bootstrap}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for event in events:
            print(json.dumps(event.to_json(), ensure_ascii=False))
        return 0
    if not events:
        where = dlq_name(args.topic) if args.topic else "any dead-letter topic"
        print(f"nothing is parked in {where}")
        return 0
    for event in events:
        what = f"{event.event_type} {event.event_id}" if event.event_id else "not a CloudEvent"
        replayed = f"replayed at {_utc(event.replayed_at)}" if event.replayed_at else "not replayed"
        reason = event.reason.replace("\n", "\n      ")
        print(
            f"{event.dlq_topic}[{event.partition}]@{event.offset}  {what}\n"
            f"    from {event.topic}[{event.original_partition}]@{event.original_offset}"
            f"  consumer {event.consumer}  attempts {event.attempts}"
            f"  parked {_utc(event.parked_at)}  {replayed}\n"
            f"    reason: {reason}"
        )
    waiting = sum(1 for event in events if event.replayed_at is None)
    print(f"{len(events)} parked, {waiting} not replayed")
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from services.runtime.dlq import UnknownEvents, UnknownTopic, dlq_name, replay

    broker = _dlq_broker()
    if broker is None:
        return 2
    bootstrap, auth = broker
    name = dlq_name(args.topic)
    try:
        result = asyncio.run(replay(bootstrap, name, args.ids or (), args.again, auth=auth))
    except UnknownTopic:
        print(f"whistle dlq replay: the broker has no topic {name}", file=sys.stderr)
        return 2
    except UnknownEvents as exc:
        missing = ", ".join(exc.args[0])
        print(f"whistle dlq replay: not parked in {name}: {missing}", file=sys.stderr)
        return 2
    except (KafkaError, OSError) as exc:
        print(f"whistle dlq replay: cannot reach the broker at {bootstrap}: {exc}", file=sys.stderr)
        return 1
    line = f"{result.sent} event{'' if result.sent == 1 else 's'} sent back from {name}"
    if result.skipped:
        line += f"; {result.skipped} replayed before, left alone (--again sends them again)"
    print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whistle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole stack on this machine")
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also run Prometheus (Debian's package) with the shipped alert rules",
    )
    up.add_argument(
        "--replicas",
        type=_replica_counts,
        default=None,
        metavar="N|SERVICE=N,…",
        help="run N processes of every service (or of those named), each behind the service's "
        "one address (round robin)",
    )
    up.set_defaults(func=_up)

    serve = commands.add_parser("serve", help="run one service (uvicorn)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument(
        "--port", type=int, default=None, help="listen here, not on the service's own port"
    )
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser(
        "migrate", help="create databases, run migrations and create topics"
    )
    migrate.add_argument("service", nargs="*", help=f"any of {', '.join(SERVICES)}; default all")
    migrate.set_defaults(func=_migrate)

    token = commands.add_parser("token", help="issue a development JWT")
    token.add_argument("--role", action="append", required=True)
    token.add_argument("--scope", action="append", help="e.g. township:T01, dept:SCJGJ")
    token.add_argument("--subject", default="dev-user")
    token.add_argument(
        "--service",
        action="append",
        choices=SERVICES,
        help="a service the token is good at (repeatable; default: all four)",
    )
    token.set_defaults(func=_token)

    replay = commands.add_parser(
        "outbox-replay", help="republish a service's events written since a time"
    )
    replay.add_argument("service", choices=SERVICES)
    replay.add_argument("--since", required=True, help="RFC 3339 time, e.g. 2026-11-01T00:00Z")
    replay.set_defaults(func=_replay)

    erase = commands.add_parser(
        "erase",
        help="erase one tip's personal data now (个人信息删除); cannot be undone",
        description="Erases the tip's words, place, photos and contact in intake's database and "
        "sends whistle.personal_data.erased: dispatch erases its copies, the ledger destroys "
        "the tip's key. Exit status: 0 erased (or erased before), 1 no such tracking number.",
    )
    erase.add_argument("tracking_no", help="the tip's tracking number (受理编号)")
    erase.add_argument(
        "--basis", help="the legal basis, recorded (default: PIPL art. 47, the person's request)"
    )
    erase.add_argument(
        "--by",
        default=f"cli:{getpass.getuser()}",
        help="who asked for it, recorded (default cli:<login name>)",
    )
    erase.set_defaults(func=_erase)

    commands.add_parser(
        "recompute-deadlines",
        help="count provisional deadlines again once the business calendar covers their year",
    ).set_defaults(func=_recompute_deadlines)

    ledger = commands.add_parser("ledger", help="the ledger's offline tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser(
        "verify",
        help="check an export (GET /v1/export) against its signed tree head, offline",
        description="Exit status: 0 verified, 1 tampering or inconsistency found, "
        "2 an input could not be read.",
    )
    verify.add_argument("export", type=Path, help="the JSON Lines file GET /v1/export returned")
    verify.add_argument(
        "--head",
        type=Path,
        help="an earlier signed tree head (JSON, as GET /v1/tree-head returns it) to check "
        "that the log only grew since",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        help="the ledger's Ed25519 public key, PEM (GET /v1/public-key); "
        "default: $WHISTLE_HOME/keys/ledger-ed25519.pub.pem",
    )
    verify.set_defaults(func=_ledger_verify)

    triage = commands.add_parser(
        "triage", help="the triage model: its held-out figures, training with past tickets"
    )
    triage_commands = triage.add_subparsers(dest="triage_command", required=True)
    for name, what in (
        ("evaluate", "train from deploy/config/triage/ and report on its held-out split"),
        (
            "train",
            "import past tickets (--history) and report the held-out figures before "
            "and after; dispatch uses them after a reference reload",
        ),
    ):
        command = triage_commands.add_parser(name, help=what, description=what + ".")
        command.add_argument(
            "--config-dir", type=Path, help="reference data; default $WHISTLE_CONFIG_DIR"
        )
        command.add_argument(
            "--threshold",
            type=float,
            help="confidence below which a tip goes to a dispatcher; "
            "default $WHISTLE_TRIAGE_CONFIDENCE_THRESHOLD",
        )
        command.set_defaults(func=_triage)
        if name == "train":
            command.add_argument(
                "--history",
                type=Path,
                help="a CSV of past tickets with the columns text and matter (a catalogue "
                "code or none), added to deploy/config/triage/history.csv",
            )
            command.add_argument(
                "--no-console",
                dest="console",
                action="store_false",
                help="do not read the dispatchers' classifications from dispatch's database "
                "(by default they replace deploy/config/triage/learned.csv)",
            )

    listen = commands.add_parser(
        "dept-listen",
        help="a county department's stream (吹哨, 催办, 督办), reporting in (报到) from here",
    )
    listen.add_argument("--dept", required=True, help="the department code, e.g. SCJGJ")
    listen.add_argument(
        "--county",
        help="the department's county (6-digit code, e.g. 140998); default the default "
        "county's, whose topics are escalation.dept.<code>.v1",
    )
    listen.add_argument(
        "--group",
        help="consumer group; default dept-<code>-listener (dept-<county>-<code>-listener)",
    )
    listen.add_argument(
        "--ack-with",
        metavar="RECEIPT_PREFIX",
        help="report in to every summons at once, receipt number PREFIX-<whistle id prefix>; "
        "without it a terminal asks 报到? [y/N]",
    )
    listen.add_argument("--max-messages", type=int, help="stop after this many messages")
    listen.add_argument(
        "--token",
        help="the department's JWT, sent with each 报到 (Kafka header authorization); "
        "default $WHISTLE_DEPT_TOKEN; without one it only listens",
    )
    listen.set_defaults(func=_dept_listen)

    dlq = commands.add_parser(
        "dlq",
        help="dead letters: what consumers parked in <topic>.dlq, and sending it back",
        description="Needs WHISTLE_KAFKA_BOOTSTRAP (the embedded broker of `whistle up`: "
        "127.0.0.1:9092). Exit status: 0 done, 1 the broker is unreachable, "
        "2 bad usage or an unknown topic or event id.",
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser(
        "list", help="what is parked, why, and whether it was replayed; changes nothing"
    )
    dlq_list.add_argument(
        "topic", nargs="?", help="e.g. intake.tips.v1 or intake.tips.v1.dlq; default every *.dlq"
    )
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq_list.set_defaults(func=_dlq_list)
    dlq_replay = dlq_commands.add_parser(
        "replay", help="send parked events back to their original topic and partition"
    )
    dlq_replay.add_argument("topic", help="e.g. intake.tips.v1 or intake.tips.v1.dlq")
    dlq_replay.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="EVENT_ID",
        help="only the event with this CloudEvent id (repeatable); default all",
    )
    dlq_replay.add_argument(
        "--again", action="store_true", help="also send what an earlier replay sent"
    )
    dlq_replay.set_defaults(func=_dlq_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
