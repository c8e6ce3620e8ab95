"""Issue 13: production refuses development secrets; token lifetimes; small open doors."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.launcher.cli import main
from services.runtime.auth import TokenVerifier, ensure_dev_keys, issue_token
from services.runtime.problems import Problem
from services.runtime.service import ServiceDefinition, create_service_app
from services.runtime.settings import (
    DEV_ACCESS_CODE_KEY,
    ProductionSettingsError,
    Settings,
    development_defaults,
    require_production_ready,
)

# ---------------------------------------------------------------- item 2: production


def _production(tmp_path: Path, **overrides: object) -> Settings:
    """Production settings with every secret given: no problem at all."""
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    ensure_dev_keys(tmp_path / "issuer" / "jwt.pem", keys / "jwt.pub.pem")
    ensure_dev_keys(keys / "ledger.pem", keys / "ledger.pub.pem")
    (keys / "contact.key").write_bytes(os.urandom(32))
    values: dict[str, object] = {
        "env": "production",
        "home": tmp_path / "home",
        "jwt_public_key_file": keys / "jwt.pub.pem",
        "contact_key_file": keys / "contact.key",
        "ledger_signing_key_file": keys / "ledger.pem",
        "wechat_token": "a-real-token",
        "wechat_app_id": "wx9999999999999999",
        "wechat_encoding_aes_key": "Z" * 43,
        "open311_api_keys": ["a-real-open311-key"],
        "access_code_key": "r" * 32,
        "wechat_safe_mode": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_development_is_the_default_and_allows_every_default() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert development_defaults(settings, "intake") == []


@pytest.mark.parametrize("service", ["intake", "dispatch", "escalation", "ledger"])
def test_production_with_every_secret_given_has_no_problem(tmp_path: Path, service: str) -> None:
    assert development_defaults(_production(tmp_path), service) == []


def test_production_names_every_development_default_at_once(tmp_path: Path) -> None:
    settings = Settings(env="production", home=tmp_path)
    problems = "\n".join(development_defaults(settings, "intake"))
    for name in (
        "WHISTLE_JWT_PUBLIC_KEY_FILE",
        "WHISTLE_CONTACT_KEY_FILE",
        "WHISTLE_WECHAT_TOKEN",
        "WHISTLE_WECHAT_APP_ID",
        "WHISTLE_WECHAT_ENCODING_AES_KEY",
        "WHISTLE_OPEN311_API_KEYS",
        "WHISTLE_ACCESS_CODE_KEY",
        "WHISTLE_WECHAT_SAFE_MODE",
    ):
        assert name in problems
    assert "WHISTLE_LEDGER_SIGNING_KEY_FILE" not in problems  # intake holds no ledger key
    ledger = "\n".join(development_defaults(settings, "ledger"))
    assert "WHISTLE_LEDGER_SIGNING_KEY_FILE" in ledger
    assert "WHISTLE_WECHAT_TOKEN" not in ledger  # only intake holds the channels' secrets


def test_production_refuses_the_development_or_a_short_access_code_key(tmp_path: Path) -> None:
    """The key is all that keeps a six-digit code from being found by hashing the million."""
    assert development_defaults(
        _production(tmp_path, access_code_key=DEV_ACCESS_CODE_KEY), "intake"
    )
    short = development_defaults(_production(tmp_path, access_code_key="s" * 31), "intake")
    assert short == ["WHISTLE_ACCESS_CODE_KEY is shorter than 32 characters; set a random secret"]
    # Only intake holds it.
    dev = _production(tmp_path, access_code_key=DEV_ACCESS_CODE_KEY)
    assert development_defaults(dev, "dispatch") == []
    with pytest.raises(ProductionSettingsError, match="WHISTLE_ACCESS_CODE_KEY"):
        require_production_ready(dev, "intake")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"wechat_token": "whistle-dev-wechat-token"}, "WHISTLE_WECHAT_TOKEN"),
        ({"wechat_app_id": "wx0123456789abcdef"}, "WHISTLE_WECHAT_APP_ID"),
        (
            {"wechat_encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"},
            "WHISTLE_WECHAT_ENCODING_AES_KEY",
        ),
        ({"open311_api_keys": ["real", "whistle-open311-dev-key"]}, "WHISTLE_OPEN311_API_KEYS"),
        ({"contact_key_file": Path("/nonexistent/contact.key")}, "WHISTLE_CONTACT_KEY_FILE"),
        ({"jwt_public_key_file": Path("/nonexistent/jwt.pub")}, "WHISTLE_JWT_PUBLIC_KEY_FILE"),
        ({"wechat_safe_mode": False}, "WHISTLE_WECHAT_SAFE_MODE"),
    ],
)
def test_production_refuses_each_development_default(
    tmp_path: Path, override: dict[str, object], named: str
) -> None:
    problems = development_defaults(_production(tmp_path, **override), "intake")
    assert len(problems) == 1
    assert named in problems[0]


def test_production_refuses_a_ledger_key_that_would_be_generated(tmp_path: Path) -> None:
    settings = _production(tmp_path, ledger_signing_key_file=None)
    (problem,) = development_defaults(settings, "ledger")
    assert "WHISTLE_LEDGER_SIGNING_KEY_FILE" in problem


def test_a_service_refuses_to_start_in_production_naming_each_problem(tmp_path: Path) -> None:
    settings = Settings(env="production", home=tmp_path)
    with pytest.raises(ProductionSettingsError) as info:
        create_service_app(ServiceDefinition("intake"), settings)
    message = str(info.value)
    assert "WHISTLE_ENV=production" in message
    assert "WHISTLE_WECHAT_TOKEN" in message and "WHISTLE_JWT_PUBLIC_KEY_FILE" in message
    require_production_ready(_production(tmp_path), "intake")  # no error


def test_whistle_serve_exits_non_zero_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_ENV", "production")
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["serve", "intake"]) != 0
    err = capsys.readouterr().err
    assert "WHISTLE_WECHAT_TOKEN" in err and "WHISTLE_OPEN311_API_KEYS" in err


# ---------------------------------------------------------------- ensure_dev_keys


def test_dev_keys_never_overwrite_an_existing_public_key(tmp_path: Path) -> None:
    private, public = tmp_path / "jwt.pem", tmp_path / "jwt.pub.pem"
    public.write_bytes(b"the issuer's public key")
    with pytest.raises(RuntimeError, match=r"jwt\.pub\.pem"):
        ensure_dev_keys(private, public)
    assert public.read_bytes() == b"the issuer's public key"
    assert not private.exists()


def test_dev_keys_derive_a_missing_public_key_from_the_private_one(tmp_path: Path) -> None:
    private, public = tmp_path / "jwt.pem", tmp_path / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    before = private.read_bytes(), public.read_bytes()
    public.unlink()
    ensure_dev_keys(private, public)
    assert (private.read_bytes(), public.read_bytes()) == before


def _make_keys(private: Path, public: Path, start: Any) -> None:
    start.wait()
    ensure_dev_keys(private, public)


def test_replicas_making_dev_keys_at_once_end_with_one_matching_pair(tmp_path: Path) -> None:
    """``whistle up --replicas``: several ledger processes start together with no signing key."""
    private, public = tmp_path / "keys" / "ledger.pem", tmp_path / "keys" / "ledger.pub.pem"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(8)
    racers = [context.Process(target=_make_keys, args=(private, public, start)) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(30)
    assert [racer.exitcode for racer in racers] == [0] * 8
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    derived = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public.read_bytes() == derived
    assert sorted(p.name for p in private.parent.iterdir()) == ["ledger.pem", "ledger.pub.pem"]


# ---------------------------------------------------------------- item 10: token lifetime


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    private, public = tmp_path / "jwt.pem", tmp_path / "jwt.pub.pem"
    ensure_dev_keys(private, public)
    return private.read_bytes(), public.read_bytes()


def _verifier(public: bytes) -> TokenVerifier:
    return TokenVerifier(
        public, issuer="whistle", audience="whistle", max_lifetime=timedelta(hours=24)
    )


def _issue(private: bytes, lifetime: timedelta) -> str:
    return issue_token(
        private,
        subject="u1",
        roles=["dispatcher"],
        scopes=[],
        issuer="whistle",
        audience="whistle",
        now=datetime.now(UTC),
        lifetime=lifetime,
    )


def test_the_default_lifetime_limit_is_a_day() -> None:
    assert Settings().jwt_max_lifetime_hours == 24


def test_a_twelve_hour_token_is_accepted(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    assert _verifier(public).verify(_issue(private, timedelta(hours=12))).subject == "u1"


def test_a_token_living_longer_than_the_maximum_is_refused(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    with pytest.raises(Problem) as info:
        _verifier(public).verify(_issue(private, timedelta(days=365)))
    assert info.value.status == 401
    assert "lifetime" in str(info.value.detail)


def test_a_token_without_iat_is_measured_from_now(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    now = datetime.now(UTC)
    claims = {"sub": "u1", "iss": "whistle", "aud": "whistle", "roles": ["dispatcher"]}
    long = jwt.encode(
        {**claims, "exp": int((now + timedelta(days=30)).timestamp())}, private, algorithm="EdDSA"
    )
    short = jwt.encode(
        {**claims, "exp": int((now + timedelta(hours=1)).timestamp())}, private, algorithm="EdDSA"
    )
    with pytest.raises(Problem):
        _verifier(public).verify(long)
    assert _verifier(public).verify(short).subject == "u1"


# ---------------------------------------------------------------- items 6 and 11: HTTP


class _Unreachable:
    def connect(self) -> object:
        @asynccontextmanager
        async def refuse() -> AsyncIterator[None]:
            raise ConnectionRefusedError("postgres.internal:5432 refused")
            yield

        return refuse()

    async def fetch_all_metadata(self) -> None:
        raise OSError("kafka.internal:9092 unreachable")


def _probe_app() -> TestClient:
    router = APIRouter()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @router.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @router.get("/sniffed")
    async def sniffed() -> Response:
        return Response("x", headers={"X-Content-Type-Options": "nosniff"})

    app = create_service_app(ServiceDefinition("probe", routers=[router]), Settings())
    unreachable = _Unreachable()
    app.state.runtime = SimpleNamespace(
        engine=unreachable, producer=SimpleNamespace(client=unreachable), draining=False
    )
    return TestClient(app, raise_server_exceptions=False)


def test_readyz_names_no_exception_class_but_logs_the_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        response = _probe_app().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unreachable", "broker": "unreachable"}
    assert "Error" not in response.text
    assert "ConnectionRefusedError" in caplog.text and "kafka.internal" in caplog.text


@pytest.mark.parametrize(("method", "path"), [("GET", "/ping"), ("GET", "/nowhere")])
def test_every_response_says_nosniff(method: str, path: str) -> None:
    response = _probe_app().request(method, path)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_draining_refusal_says_nosniff() -> None:
    client = _probe_app()
    client.app.state.runtime.draining = True  # type: ignore[attr-defined]
    response = client.post("/ping")
    assert response.status_code == 503
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_response_naming_nosniff_itself_carries_it_once() -> None:
    response = _probe_app().get("/sniffed")
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]


def _requests(method: str, **labels: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "whistle_http_requests":
            total += sum(
                sample.value
                for sample in metric.samples
                if sample.name.endswith("_total")
                and sample.labels.get("service") == "probe"
                and sample.labels["method"] == method
                and all(sample.labels[k] == v for k, v in labels.items())
            )
    return total


def test_a_request_that_raised_is_counted_as_the_500_it_was_answered() -> None:
    before = _requests("GET", route="/broken", status="500")
    response = _probe_app().get("/broken")
    assert response.status_code == 500
    assert _requests("GET", route="/broken", status="500") == before + 1


def test_an_unknown_method_is_counted_as_other() -> None:
    before = _requests("other")
    client = _probe_app()
    client.request("FOOBAR1", "/ping")
    client.request("BREW", "/ping")
    assert _requests("FOOBAR1") == 0 and _requests("BREW") == 0
    assert _requests("other") == before + 2
    client.get("/ping")
    assert _requests("GET") >= 1


def test_whistle_up_is_for_development_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_ENV", "production")
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["up"]) == 2
    assert "WHISTLE_ENV=production" in capsys.readouterr().out
    assert not (tmp_path / "keys").exists()  # no development key was generated


def test_the_inbox_must_remember_events_as_long_as_an_outbox_may_send_them_again() -> None:
    """Retention (issue 20): an inbox that forgot an event sooner would take it twice."""
    with pytest.raises(ValueError, match="WHISTLE_INBOX_RETENTION_DAYS"):
        Settings(outbox_retention_days=30, inbox_retention_days=29)
    assert Settings(outbox_retention_days=30, inbox_retention_days=30).inbox_retention_days == 30
