"""The ``whistle`` command's offline parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.launcher.cli import main
from services.runtime.auth import TokenVerifier
from services.runtime.problems import Problem


def test_token_prints_a_token_the_services_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["token", "--role", "dispatcher", "--scope", "township:T03"]) == 0
    token = capsys.readouterr().out.strip()
    public_key = (tmp_path / "keys" / "jwt-ed25519.pub.pem").read_bytes()
    for service in ("intake", "dispatch", "escalation", "ledger"):
        verifier = TokenVerifier(public_key, issuer="whistle", audience=f"whistle:{service}")
        principal = verifier.verify(token)
    assert principal.roles == {"dispatcher"}
    assert principal.may_act_on("township", "T03")
    assert not principal.may_act_on("township", "T04")


def test_a_token_for_one_service_is_refused_by_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["token", "--role", "auditor", "--service", "ledger"]) == 0
    token = capsys.readouterr().out.strip()
    public_key = (tmp_path / "keys" / "jwt-ed25519.pub.pem").read_bytes()

    def verifier(service: str) -> TokenVerifier:
        return TokenVerifier(public_key, issuer="whistle", audience=f"whistle:{service}")

    assert verifier("ledger").verify(token).roles == {"auditor"}
    with pytest.raises(Problem) as refused:
        verifier("dispatch").verify(token)
    assert refused.value.status == 401


def test_token_refuses_an_unknown_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["token", "--role", "mayor"]) == 2
    assert "unknown role(s): mayor" in capsys.readouterr().err


def test_token_issues_the_county_governments_role_for_admission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 县政府 approves admission (准入); the dispatch service knows it as county_government.
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    assert main(["token", "--role", "county_government", "--service", "dispatch"]) == 0
    token = capsys.readouterr().out.strip()
    public_key = (tmp_path / "keys" / "jwt-ed25519.pub.pem").read_bytes()
    verifier = TokenVerifier(public_key, issuer="whistle", audience="whistle:dispatch")
    assert verifier.verify(token).roles == {"county_government"}


def test_migrate_refuses_an_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "billing"]) == 2
    assert "unknown service(s): billing" in capsys.readouterr().err
