"""Tenancy, the first step (issue 18, item 4; docs/scale.md): the ``county`` attribute on every
event, the counties' reference data, the county scope of tokens, and the ledger's canonical
bytes committing to the county while entries written before stay verifiable."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from contracts.envelope import CloudEvent, new_event
from contracts.events import DeadlineStopped
from contracts.tenancy import Counties
from reference.county import (
    ReferenceDataError,
    county_directories,
    county_tenancy,
    load_counties,
    load_reference,
)
from services.ledger.export import entry_line, header_line
from services.ledger.heads import HeadSigner
from services.ledger.kpi_store import CountyScope
from services.ledger.merkle import Frontier, canonical_bytes, leaf_hash
from services.ledger.verify import verify_export
from services.runtime.auth import Principal, TokenVerifier, ensure_dev_keys, issue_token
from tests.conftest import REPO

CONFIG = REPO / "deploy" / "config"
NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)
DEFAULT, SECOND = "140999", "140998"


# ------------------------------------------------------------------ the envelope


def _stopped() -> DeadlineStopped:
    return DeadlineStopped(
        case_id=UUID("0193a1b2-0000-7000-8000-000000000001"),
        kind="resolution",
        round=1,
        due_at=NOW,
        stopped_at=NOW,
        on_time=True,
        late_by_seconds=0,
        stopped_by="whistle.case.resolved",
    )


def test_an_event_carries_its_county_as_a_cloudevents_extension_attribute() -> None:
    event = new_event("whistle/dispatch", "c1", _stopped(), NOW, county=SECOND)
    document = event.to_json()
    assert document["county"] == SECOND and "county" not in document["data"]
    assert CloudEvent.model_validate_json(event.to_bytes()).county == SECOND
    # An event of a producer that named none leaves the attribute out (the relay adds the
    # deployment's default as it publishes: services/runtime/outbox.py).
    assert "county" not in new_event("whistle/dispatch", "c1", _stopped(), NOW).to_json()


@pytest.mark.parametrize("county", ["14099", "1409990", "QX0001", ""])
def test_a_county_is_a_six_digit_division_code(county: str) -> None:
    with pytest.raises(ValidationError):
        new_event("whistle/dispatch", "c1", _stopped(), NOW, county=county)


def test_the_admission_rule_takes_a_known_county_or_none_and_refuses_another() -> None:
    counties = Counties(DEFAULT, frozenset({DEFAULT, SECOND}))
    assert counties.refusal(SECOND) is None
    assert counties.refusal(None) is None  # produced before tenancy: the default county's
    assert counties.of(None) == DEFAULT and counties.of(SECOND) == SECOND
    assert counties.refusal("999999") == (
        "county 999999 is not one of the counties served here (140998, 140999)"
    )
    with pytest.raises(ValueError):
        Counties("999999", frozenset({DEFAULT}))


# ------------------------------------------------------------------ reference data


def test_the_shipped_configuration_holds_two_counties_the_root_one_the_default() -> None:
    counties = load_counties(CONFIG)
    assert list(counties) == [DEFAULT, SECOND]
    assert counties.default.county.code == DEFAULT
    assert counties.tenancy == Counties(DEFAULT, frozenset({DEFAULT, SECOND}))
    assert county_tenancy(CONFIG) == counties.tenancy
    assert [d.name for d in county_directories(CONFIG)] == [SECOND]
    second = counties[SECOND]
    assert (second.county.name, second.county.tracking_prefix) == ("桃林县", "TL")
    assert counties.default.county.tracking_prefix == "QX"
    assert sorted(second.townships) == ["L01", "L02"]
    # Its own units and claims, the default county's catalogue and departments.
    assert "L01-TEAM" in second.units and "T01-TEAM" not in second.units
    assert second.catalogue == counties.default.catalogue
    assert second.departments == counties.default.departments


def test_load_reference_reads_the_default_county_or_the_one_named() -> None:
    assert load_reference(CONFIG).county.code == DEFAULT
    assert load_reference(CONFIG, DEFAULT).county.code == DEFAULT
    assert load_reference(CONFIG, SECOND).county.code == SECOND
    with pytest.raises(ReferenceDataError, match="no county 999999"):
        load_reference(CONFIG, "999999")


def test_a_place_belongs_to_the_county_whose_grids_hold_it() -> None:
    counties = load_counties(CONFIG)
    assert counties.county_at(38.71, 113.31) == DEFAULT
    assert counties.county_at(38.71, 114.31) == SECOND
    assert counties.county_of_grid("T01V01G01") == DEFAULT
    assert counties.county_of_grid("L01V01G01") == SECOND
    assert counties.county_of_grid("X") is None


def _copy(tmp_path: Path, with_second: bool = True) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    if not with_second:
        shutil.rmtree(target / SECOND)
    return target


def test_the_single_county_layout_still_loads_as_one_county(tmp_path: Path) -> None:
    config = _copy(tmp_path, with_second=False)
    counties = load_counties(config)
    assert list(counties) == [DEFAULT]
    assert county_tenancy(config) == Counties.single(DEFAULT)


def _edit(path: Path, edit: object) -> None:
    doc = yaml.safe_load(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))


def test_a_county_whose_code_is_not_its_directorys_name_is_refused(tmp_path: Path) -> None:
    config = _copy(tmp_path)
    _edit(config / SECOND / "county.yaml", lambda doc: doc.update(code="140997"))
    with pytest.raises(ReferenceDataError) as info:
        load_counties(config)
    assert info.value.reasons == ["140998/county.yaml: code 140997 is not its directory's name"]


def test_counties_sharing_a_prefix_or_a_grid_are_refused_with_every_reason(
    tmp_path: Path,
) -> None:
    config = _copy(tmp_path)

    def collide(doc: dict) -> None:
        doc["tracking_prefix"] = "QX"
        doc["townships"][0]["villages"][0]["grids"][0]["id"] = "T01V01G01"

    _edit(config / SECOND / "county.yaml", collide)
    with pytest.raises(ReferenceDataError) as info:
        load_counties(config)
    assert info.value.reasons == [
        "counties: tracking prefix 'QX' is used by more than one county",
        "counties: grid id 'T01V01G01' is used by more than one county",
    ]


def test_a_broken_second_county_names_its_directory(tmp_path: Path) -> None:
    config = _copy(tmp_path)
    (config / SECOND / "claims.yaml").unlink()
    with pytest.raises(ReferenceDataError) as info:
        load_counties(config)
    assert info.value.reasons[0].startswith("140998/claims.yaml: cannot read")


# ------------------------------------------------------------------ tokens


def test_a_token_without_a_county_acts_for_the_default_county(tmp_path: Path) -> None:
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    ensure_dev_keys(private, public)
    verifier = TokenVerifier(
        public.read_bytes(), issuer="whistle", audience="whistle:dispatch", default_county=DEFAULT
    )

    def scopes(*given: str) -> frozenset[str]:
        token = issue_token(
            private.read_bytes(),
            subject="u",
            roles=["dispatcher"],
            scopes=list(given),
            issuer="whistle",
            audience="whistle:dispatch",
            now=datetime.now(UTC),
        )
        return verifier.verify(token).scopes

    assert scopes("township:T01") == {"township:T01", f"county:{DEFAULT}"}
    assert scopes("county:140998", "township:L01") == {"county:140998", "township:L01"}
    assert scopes("county:*") == {"county:*"}


def test_a_principal_reads_its_counties_or_all_with_the_city_scope() -> None:
    def counties(*scopes: str) -> frozenset[str] | None:
        return Principal("u", frozenset({"auditor"}), frozenset(scopes)).counties()

    assert counties(f"county:{DEFAULT}", "township:T01") == {DEFAULT}
    assert counties("county:140998", f"county:{DEFAULT}") == {SECOND, DEFAULT}
    assert counties("county:*") is None
    # A KPI reader naming none (a verifier not told the default) counts the default county's.
    scope = CountyScope(DEFAULT)
    assert scope.narrowed(frozenset()).readable == {DEFAULT}
    assert scope.narrowed(None).readable is None
    assert scope.narrowed(frozenset({SECOND})).readable == {SECOND}


# ------------------------------------------------------------------ the ledger


def test_the_ledger_commits_to_the_county_and_entries_without_one_still_verify() -> None:
    before = CloudEvent.model_validate(
        new_event("whistle/dispatch", "c1", _stopped(), NOW).to_json()
    )
    after = new_event("whistle/dispatch", "c1", _stopped(), NOW, county=SECOND)
    entries = [canonical_bytes(before.to_json()), canonical_bytes(after.to_json())]
    assert b'"county"' not in entries[0] and b'"county":"140998"' in entries[1]
    leaves = [leaf_hash(entry) for entry in entries]
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    signer = HeadSigner(Ed25519PrivateKey.generate())
    head = signer.sign(len(leaves), frontier.root(), NOW)

    def export(held: list[bytes]) -> list[bytes]:
        return [
            header_line(0, [], head),
            *(entry_line(seq, leaves[seq], held[seq]) for seq in range(len(held))),
        ]

    assert verify_export(export(entries), signer.public_key()).ok
    # Moving the entry to another county changes its bytes: the verifier names it.
    moved = entries[1].replace(b'"county":"140998"', b'"county":"140999"')
    report = verify_export(export([entries[0], moved]), signer.public_key())
    assert [(f.kind, f.seq) for f in report.findings] == [("altered", 1)]
    # Exported to the default county's auditor, the other county's entry is withheld: its leaf
    # still makes the signed root, its bytes are not shown.
    lines = [header_line(0, [], head), entry_line(0, leaves[0], entries[0])]
    withheld = entry_line(1, leaves[1], entries[1], withheld=True)
    assert b"140998" not in withheld
    report = verify_export([*lines, withheld], signer.public_key())
    assert report.ok and report.withheld == 1, report.render()
    # A withheld line's leaf is still the tree's: another leaf does not make the root.
    forged = entry_line(1, leaf_hash(b"{}"), None, withheld=True)
    assert [f.kind for f in verify_export([*lines, forged], signer.public_key()).findings] == [
        "root"
    ]


# ------------------------------------------------------------------ deployment


@pytest.mark.parametrize("service", ["intake", "dispatch", "escalation", "ledger", "migrate.job"])
def test_every_service_in_kubernetes_mounts_every_countys_configmap(service: str) -> None:
    """A service that does not see a county's directory refuses its events: each county's
    ConfigMap (services/launcher/configmaps.py) is mounted at <config>/<code> in all four, and
    in the migrate Job, which creates every county's department topics."""
    documents = yaml.safe_load_all((REPO / "deploy" / "k8s" / f"{service}.yaml").read_text())
    (deployment,) = [d for d in documents if d and d["kind"] in ("Deployment", "Job")]
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]}
    for county in county_directories(CONFIG):
        name = f"config-{county.name}"
        assert mounts[name] == f"/etc/whistle/config/{county.name}"
        assert volumes[name] == f"whistle-config-{county.name}"
    kustomization = yaml.safe_load((REPO / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert all(
        f"config-{c.name}.configmap.yaml" in kustomization["resources"]
        for c in county_directories(CONFIG)
    )
