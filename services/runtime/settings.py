"""Settings shared by every service and the launcher; environment prefix ``WHISTLE_``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from contracts.topics import DEFAULT_GROUP_PREFIX
from services.runtime.kafka import BrokerAuth, SaslMechanism
from services.runtime.proxies import network

SERVICES: tuple[str, ...] = ("intake", "dispatch", "escalation", "ledger")

# The public development values of intake's channel secrets: production refuses them.
DEV_WECHAT_TOKEN = "whistle-dev-wechat-token"
DEV_WECHAT_APP_ID = "wx0123456789abcdef"
DEV_WECHAT_ENCODING_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
DEV_OPEN311_API_KEY = "whistle-open311-dev-key"
DEV_ACCESS_CODE_KEY = "whistle-dev-access-code-key-not-for-production"
# The shortest access-code key production takes: a key is what keeps six digits unguessable.
ACCESS_CODE_KEY_MIN_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WHISTLE_", extra="ignore")

    # "production" refuses to start with any development default (development_defaults below).
    env: Literal["development", "production"] = "development"
    home: Path = Path(".whistle")
    config_dir: Path = Path("deploy/config")
    # A PostgreSQL server URL; each service uses its own database ``whistle_<service>`` on it.
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    # Real Kafka supports idempotent producers; the embedded Tansu broker refuses InitProducerId.
    kafka_enable_idempotence: bool = True
    # Group membership timing. Kafka's defaults suit production; the embedded broker only
    # reassigns a departed member's partitions after its session times out, so the launcher
    # and the tests use short sessions to resume quickly after a restart.
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_rebalance_timeout_ms: int = 30_000
    # Replicas of a service share the consumer group ``<prefix>-<service>``; a second,
    # differently configured copy beside them (a test's, a debugging one) takes its own prefix.
    kafka_group_prefix: str = DEFAULT_GROUP_PREFIX
    kafka_topic_partitions: int = 3
    kafka_replication_factor: int = 1
    # Who this process is to the broker (SASL; docs/security.md). Unset: the broker asks nothing.
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_tls: bool = False
    kafka_tls_cafile: Path | None = None

    host: str = "127.0.0.1"
    intake_port: int = 8001
    dispatch_port: int = 8002
    escalation_port: int = 8003
    # Escalation as browsers reach it (e.g. https://escalation.example.gov.cn): the console's
    # case page links to its township meeting page (联席会议). Unset: this host, escalation_port.
    escalation_url: str | None = None
    ledger_port: int = 8004
    embedded_postgres_port: int = 54329
    embedded_broker_port: int = 9092
    # whistle up --monitoring: Prometheus on this port, with these alert rules (*.rules.yml).
    prometheus_port: int = 9090
    prometheus_rules_dir: Path = Path("deploy/prometheus/rules")

    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None
    jwt_issuer: str = "whistle"
    # Each service accepts only tokens for it: audience "<jwt_audience>:<service>" (a token
    # may name several). One stolen for the ledger's auditors does not open dispatch.
    jwt_audience: str = "whistle"
    # Tokens whose lifetime (exp - iat, or exp - now without iat) exceeds this are refused;
    # the development tokens live 12 hours.
    jwt_max_lifetime_hours: float = 24

    contact_key_file: Path | None = None
    # Below it a tip waits for a dispatcher. The confidence is calibrated (a tip at 0.7 is
    # right about seven times in ten); 0.7 keeps wrong assignments on the corpus's held-out
    # tips under 2 % (docs/triage.md).
    triage_confidence_threshold: float = 0.7
    # A routed tip joins an open case of the same matter opened within the window, within this
    # distance or in the same grid (services/dispatch/merging.py); a window of 0 merges nothing.
    merge_distance_m: float = 200.0
    merge_window_hours: float = 72.0
    # 行政执法公示: a closed enforcement case is published this many days after it was closed
    # (services/dispatch/publicity.py), so that the parties hear the result first.
    publicity_delay_days: float = 7.0
    # 回访: a resolved case may close only once the citizen's follow-up (a rating, on any
    # channel) is recorded or this many days have passed since its resolution
    # (services/dispatch/lifecycle.py). Calendar days: the business calendar is escalation's.
    follow_up_days: float = 3.0
    # How often dispatch looks whether the county's day has inspection tasks (综合查一次, 定岗巡查)
    # not planned yet, and plans them (services/dispatch/inspection_service.py).
    inspection_planning_interval_seconds: float = 60.0

    # The ledger's Ed25519 key for tree heads; unset: a development key under WHISTLE_HOME,
    # generated if missing. Its public key is kept alongside (``<name>.pub.pem``).
    ledger_signing_key_file: Path | None = None
    ledger_tree_head_interval_seconds: float = 10
    # How often the ledger recounts the whistle_kpi_* gauges (/v1/kpis/metrics) from its log.
    ledger_kpi_refresh_seconds: float = 60

    # Retention (services/runtime/retention.py; docs/privacy.md has the table). Sent outbox rows
    # are kept this long to heal a broker that lost them; inbox rows this long to recognise a
    # redelivery: longer than the outbox's and than the broker's own log retention.
    outbox_retention_days: int = 30
    inbox_retention_days: int = 60
    retention_interval_hours: float = 24
    # Intake: a citizen's contact (name, phone; its mask and keyed hash) is removed this many days
    # after the tip's case closed; the tip's words, place, photos and comments after these.
    contact_retention_days: int = 180
    tip_retention_days: int = 1095
    # An upload no tip cites is removed after this long.
    attachment_orphan_hours: float = 24
    outbox_poll_seconds: float = 0.2
    # How often the relay compares the broker's logs with what it published, to send again
    # what the broker lost (services/runtime/outbox.py).
    outbox_check_seconds: float = 2.0
    # How often a consumer checks that the broker still holds what it read (and rewinds if not).
    consumer_verify_seconds: float = 5.0
    # A consumer with lag that processes nothing this long is stuck: /healthz fails.
    consumer_watch_seconds: float = 5.0
    consumer_stuck_after_seconds: float = 120.0
    consumer_max_attempts: int = 5
    consumer_retry_backoff_seconds: float = 0.2

    # Escalation's scheduler: how often it looks for due ladder steps, and how many it claims
    # per transaction.
    escalation_scheduler_interval_seconds: float = 0.25
    escalation_scheduler_batch_size: int = 500
    # How often escalation looks at calendar.yaml's digest and puts a changed file in force
    # (a year added is counted on without a restart; SIGHUP and POST /v1/calendar/reload too).
    calendar_poll_seconds: float = 60.0
    # Which deadline policies escalation runs: "default" (deploy/config/policies.yaml) or e.g.
    # "demo" (policies.demo.yaml: second-scale durations, to watch the ladder live).
    policy_profile: str = "default"

    # Intake's rate limits (429 with Retry-After beyond them), each a GCRA: the whole allowance
    # at once, then one more every period / limit (services/intake/gcra.py).
    rate_limit_tips_per_address_per_hour: int = 30
    rate_limit_tips_per_phone_per_day: int = 10
    rate_limit_lookups_per_address_per_hour: int = 300
    rate_limit_wrong_codes_per_tracking_no_per_hour: int = 10
    # Wrong access codes an address may send an hour, over all numbers; beyond, it is refused
    # before its code is looked at (services/intake/access_codes.py).
    rate_limit_wrong_codes_per_address_per_hour: int = 20
    rate_limit_attachments_per_address_per_hour: int = 60
    # The proxies in front of intake (the ingress): addresses or CIDR blocks, a JSON list in the
    # environment. Only a request from one of them has its X-Forwarded-For believed, the client
    # being the right-most address there that is not one of them (services/runtime/proxies.py).
    # Empty (the default): the header is ignored, the client is the peer.
    trusted_proxies: list[str] = []

    # A request that finds the database (or the network to it) unavailable answers 503 with
    # this Retry-After.
    dependency_retry_after_seconds: int = 5
    # The largest request body a route reads (413 beyond); uploads, Open311 and WeChat keep
    # their own limits (services/runtime/limits.py).
    request_body_max_bytes: int = 64 * 1024
    # Intake answers within seconds even when PostgreSQL hangs (frozen, cut off): a request's
    # every unit of database work gives up after the deadline — WeChat waits 5 s for its reply,
    # and the driver may take 2 s more to drop the connection given up on. Intake's connections
    # also time out connecting and per statement, so its relay and consumer notice too.
    intake_database_deadline_seconds: float = 2.5
    intake_database_connect_timeout_seconds: float = 5
    intake_database_statement_timeout_seconds: float = 10

    # Citizens' uploads (POST /v1/attachments), stored by SHA-256; every intake replica must
    # see the same directory. Unset: ``$WHISTLE_HOME/attachments``.
    attachments_dir: Path | None = None
    attachment_max_bytes: int = 20 * 1024 * 1024
    # Officers' evidence for case steps (POST /v1/cases/{id}/evidence on dispatch), stored by
    # SHA-256; every dispatch replica must see the same directory.
    # Unset: ``$WHISTLE_HOME/evidence``.
    evidence_dir: Path | None = None
    # The department page (escalation's /dept) sends referrals (移送) to dispatch from the
    # browser: the origin browsers reach dispatch at (scheme://host:port), and the origin of
    # the department page, which dispatch lets call POST /v1/referrals (CORS). Unset: each
    # service's http://WHISTLE_HOST:port.
    dispatch_public_origin: str | None = None
    department_page_origin: str | None = None
    # Evidence includes video from body cameras (执法记录仪): larger than a citizen's upload.
    evidence_max_bytes: int = 200 * 1024 * 1024

    # The WeChat official account's callback (开发者中心 → 服务器配置). The defaults are for
    # development only; production sets all three from the account's console.
    wechat_token: str = DEV_WECHAT_TOKEN
    wechat_app_id: str = DEV_WECHAT_APP_ID
    wechat_encoding_aes_key: str = DEV_WECHAT_ENCODING_AES_KEY
    # A photo or location sent this long after the citizen's text attaches to that tip.
    wechat_supplement_window_minutes: int = 30
    # A callback signed further than this from intake's clock (either way) is refused, and
    # each (timestamp, nonce) is remembered this long so that a signed request is taken once.
    wechat_timestamp_window_seconds: int = 300
    # The account is in safe mode (安全模式) or compatible mode (兼容模式): every callback must
    # come encrypted (encrypt_type=aes, msg_signature); a plaintext one is refused.
    wechat_safe_mode: bool = False

    # The key of the access codes' keyed hash (HMAC-SHA256, services/intake/tracking.py). The
    # default is public, for development only: production refuses it.
    access_code_key: str = DEV_ACCESS_CODE_KEY

    # Keys Open311 clients must send to POST requests (a JSON list in the environment). The
    # default is for development only: replace it in production.
    open311_api_keys: list[str] = [DEV_OPEN311_API_KEY]

    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            network(entry)  # a typo must stop the start, not silently trust nobody
        return entries

    @model_validator(mode="after")
    def _inbox_outlasts_outbox(self) -> Settings:
        # An outbox heals a lost event by sending it again up to its retention: an inbox that
        # forgot it sooner would take it twice.
        if self.inbox_retention_days < self.outbox_retention_days:
            raise ValueError(
                f"WHISTLE_INBOX_RETENTION_DAYS ({self.inbox_retention_days}) must be at least "
                f"WHISTLE_OUTBOX_RETENTION_DAYS ({self.outbox_retention_days})"
            )
        return self

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url_of(self, service: str) -> str:
        return f"http://{self.host}:{self.port_of(service)}"

    def database_url_for(self, service: str) -> str:
        """The SQLAlchemy (asyncpg) URL of a service's own database."""
        if not self.database_url:
            raise RuntimeError("WHISTLE_DATABASE_URL is not set (run the stack with `whistle up`)")
        url = make_url(self.database_url).set(
            drivername="postgresql+asyncpg", database=f"whistle_{service}"
        )
        return url.render_as_string(hide_password=False)

    def audience_of(self, service: str) -> str:
        return f"{self.jwt_audience}:{service}"

    def audiences(self, services: Iterable[str] = SERVICES) -> list[str]:
        """The audiences of a token good at ``services`` (all four unless narrowed)."""
        return [self.audience_of(service) for service in services]

    def broker_auth(self) -> BrokerAuth:
        return BrokerAuth(
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            tls=self.kafka_tls,
            cafile=self.kafka_tls_cafile,
        )

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap:
            raise RuntimeError(
                "WHISTLE_KAFKA_BOOTSTRAP is not set (run the stack with `whistle up`)"
            )
        return self.kafka_bootstrap

    @property
    def public_key_path(self) -> Path:
        return self.jwt_public_key_file or self.home / "keys" / "jwt-ed25519.pub.pem"

    @property
    def contact_key_path(self) -> Path:
        return self.contact_key_file or self.home / "keys" / "contact.key"

    @property
    def attachments_path(self) -> Path:
        return self.attachments_dir or self.home / "attachments"

    @property
    def dispatch_origin(self) -> str:
        return self.dispatch_public_origin or self.url_of("dispatch")

    @property
    def department_origins(self) -> list[str]:
        """The department page's origins: the one set, else escalation's — on the loopback
        address under both spellings, as a browser on this machine may open either."""
        if self.department_page_origin:
            return [self.department_page_origin]
        own = self.url_of("escalation")
        if self.host == "127.0.0.1":
            return [own, f"http://localhost:{self.port_of('escalation')}"]
        return [own]

    @property
    def evidence_path(self) -> Path:
        return self.evidence_dir or self.home / "evidence"

    @property
    def private_key_path(self) -> Path:
        return self.jwt_private_key_file or self.home / "keys" / "jwt-ed25519.pem"

    @property
    def ledger_signing_key_path(self) -> Path:
        return self.ledger_signing_key_file or self.home / "keys" / "ledger-ed25519.pem"

    @property
    def ledger_public_key_path(self) -> Path:
        key = self.ledger_signing_key_path
        return key.with_name(f"{key.stem}.pub{key.suffix}")


class ProductionSettingsError(RuntimeError):
    """A service asked to run in production with development defaults."""

    def __init__(self, service: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"whistle {service}: refusing to start with WHISTLE_ENV=production and "
            f"development defaults:\n{lines}"
        )


def development_defaults(settings: Settings, service: str) -> list[str]:
    """What stops ``service`` from running in production, one line each; nothing in
    development. The one place for the rule: every service calls it as it starts.

    Every service needs its issuer's JWT public key; only intake holds the contact key and the
    channels' secrets, only the ledger its signing key, so only they are asked for them.
    """
    if settings.env != "production":
        return []
    problems: list[str] = []
    if not settings.public_key_path.is_file():
        problems.append(
            f"WHISTLE_JWT_PUBLIC_KEY_FILE: {settings.public_key_path} does not exist (a "
            "development key pair would be generated); give the public key of your issuer"
        )
    if service == "intake":
        if not settings.contact_key_path.is_file():
            problems.append(
                f"WHISTLE_CONTACT_KEY_FILE: {settings.contact_key_path} does not exist (a "
                "development key would be generated); give intake its 32-byte contact key"
            )
        for variable, value, default in (
            ("WHISTLE_WECHAT_TOKEN", settings.wechat_token, DEV_WECHAT_TOKEN),
            ("WHISTLE_WECHAT_APP_ID", settings.wechat_app_id, DEV_WECHAT_APP_ID),
            (
                "WHISTLE_WECHAT_ENCODING_AES_KEY",
                settings.wechat_encoding_aes_key,
                DEV_WECHAT_ENCODING_AES_KEY,
            ),
        ):
            if value == default:
                problems.append(
                    f"{variable} is the public development value; set the official account's"
                )
        if not settings.wechat_safe_mode:
            # Plaintext mode (明文模式) carries each citizen's message and OpenID in the clear
            # and is signed by the token alone: production takes only encrypted callbacks.
            problems.append(
                "WHISTLE_WECHAT_SAFE_MODE is off; set it to true and the official account to "
                "安全模式 (or 兼容模式)"
            )
        if settings.access_code_key == DEV_ACCESS_CODE_KEY:
            problems.append(
                "WHISTLE_ACCESS_CODE_KEY is the public development value; set a random secret "
                f"of at least {ACCESS_CODE_KEY_MIN_LENGTH} characters"
            )
        elif len(settings.access_code_key) < ACCESS_CODE_KEY_MIN_LENGTH:
            problems.append(
                f"WHISTLE_ACCESS_CODE_KEY is shorter than {ACCESS_CODE_KEY_MIN_LENGTH} "
                "characters; set a random secret"
            )
        if DEV_OPEN311_API_KEY in settings.open311_api_keys:
            problems.append(
                f"WHISTLE_OPEN311_API_KEYS holds the public development key {DEV_OPEN311_API_KEY}"
            )
    if service == "ledger" and not settings.ledger_signing_key_path.is_file():
        problems.append(
            f"WHISTLE_LEDGER_SIGNING_KEY_FILE: {settings.ledger_signing_key_path} does not "
            "exist (a development key would be generated); give the ledger its signing key"
        )
    return problems


def require_production_ready(settings: Settings, service: str) -> None:
    """Raise ProductionSettingsError naming every development default ``service`` would use."""
    problems = development_defaults(settings, service)
    if problems:
        raise ProductionSettingsError(service, problems)
