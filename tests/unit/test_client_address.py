"""Who the client is behind proxies (services/runtime/proxies.py): X-Forwarded-For is believed
only from trusted proxies, and then only from the right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.launcher.cli import main
from services.runtime.proxies import client_address
from services.runtime.settings import Settings

INGRESS = ["10.9.0.0/16", "fd00:9::/32"]


def test_with_no_trusted_proxy_the_header_is_ignored() -> None:
    assert client_address("203.0.113.5", ["198.51.100.1"], []) == "203.0.113.5"


def test_from_an_untrusted_peer_the_header_is_ignored() -> None:
    assert client_address("203.0.113.5", ["198.51.100.1"], INGRESS) == "203.0.113.5"


def test_from_the_ingress_the_client_is_what_the_ingress_saw() -> None:
    assert client_address("10.9.3.4", ["198.51.100.1"], INGRESS) == "198.51.100.1"


def test_what_the_client_wrote_itself_is_left_of_it_and_ignored() -> None:
    forwarded = ["1.2.3.4, 10.9.0.1", "198.51.100.1"]  # two header lines read as one list
    assert client_address("10.9.3.4", forwarded, INGRESS) == "198.51.100.1"


def test_our_own_hops_are_skipped() -> None:
    forwarded = ["7.7.7.7, 198.51.100.1, 10.9.0.8 , fd00:9::1"]
    assert client_address("10.9.3.4", forwarded, INGRESS) == "198.51.100.1"


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    assert client_address("fd00:9::2", ["2001:db8::1"], INGRESS) == "2001:db8::1"
    assert client_address("::ffff:10.9.0.1", ["::ffff:198.51.100.1"], INGRESS) == "198.51.100.1"


def test_from_the_ingress_without_the_header_the_client_is_the_peer() -> None:
    assert client_address("10.9.3.4", [], INGRESS) == "10.9.3.4"


def test_when_every_hop_is_ours_the_client_is_the_farthest() -> None:
    assert client_address("10.9.3.4", ["10.9.0.1, 10.9.0.2"], INGRESS) == "10.9.0.1"


def test_a_request_without_a_peer() -> None:
    assert client_address(None, ["198.51.100.1"], INGRESS) == "unknown"


def test_trusted_proxies_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().trusted_proxies == []
    monkeypatch.setenv("WHISTLE_TRUSTED_PROXIES", '["10.9.0.0/16", "192.0.2.10"]')
    assert Settings().trusted_proxies == ["10.9.0.0/16", "192.0.2.10"]


def test_a_malformed_trusted_proxy_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_TRUSTED_PROXIES", '["10.9.0.0/33"]')
    with pytest.raises(ValidationError, match=r"10\.9\.0\.0/33"):
        Settings()


def test_whistle_serve_leaves_forwarded_headers_to_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (its default) before
    intake sees the request, and anyone on the host could pick their own address."""
    ran: dict[str, Any] = {}
    monkeypatch.setenv("WHISTLE_HOME", str(tmp_path))
    monkeypatch.setattr("uvicorn.run", lambda app, **options: ran.update(options))
    assert main(["serve", "intake"]) == 0
    assert ran["proxy_headers"] is False
