"""The county's reference data: geography, departments, units and staff, the matter catalogue.

Loaded from versioned YAML under ``deploy/config/`` and validated as a whole: a file that
parses but points at a township, village, department or item that does not exist is refused
with every reason at once, so an operator fixes the file in one pass.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import date
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from contracts.cases import CaseStatus, PenaltyKind
from contracts.tenancy import COUNTY_PATTERN, Counties, is_county_code
from contracts.topics import BrokerDepartment
from reference.geometry import GridLocator, polygon_problem
from reference.inspections import (
    DEFAULT_JOINT_DAY,
    InspectionPlan,
    InspectionPlans,
    joint_plan_id,
    weekday_number,
)
from reference.segmentation import KeywordIndex, KeywordSegmenter


class Domain(StrEnum):
    """Who holds the expertise: the 9 county teams seconded to townships, then the N units."""

    MARKET = "market"  # 市场监管
    TRANSPORT = "transport"  # 交通
    EMERGENCY = "emergency"  # 应急
    CULTURE = "culture"  # 文化
    NATURAL_RESOURCES = "natural_resources"  # 自然资源
    HEALTH = "health"  # 卫生健康
    LABOUR = "labour"  # 劳动监察
    AGRICULTURE = "agriculture"  # 农业农村
    URBAN = "urban"  # 城市管理
    POLICE = "police"  # 派出所
    JUDICIAL = "judicial"  # 司法所
    ECOLOGY = "ecology"  # 生态环境
    VETERINARY = "veterinary"  # 畜牧兽医站
    LABOUR_SECURITY = "labour_security"  # 劳动保障所
    SME_SERVICE = "sme_service"  # 中小企业服务站


SECONDED_DOMAINS: frozenset[Domain] = frozenset(
    {
        Domain.MARKET,
        Domain.TRANSPORT,
        Domain.EMERGENCY,
        Domain.CULTURE,
        Domain.NATURAL_RESOURCES,
        Domain.HEALTH,
        Domain.LABOUR,
        Domain.AGRICULTURE,
        Domain.URBAN,
    }
)


class Authority(StrEnum):
    STATUTORY = "statutory"
    DEVOLVED = "devolved"  # 赋权
    ENTRUSTED = "entrusted"  # 委托
    ASSIST = "assist"  # 协助
    COUNTY_ONLY = "county_only"
    OUT_OF_LIST = "out_of_list"  # 清单之外


class MatterKind(StrEnum):
    """Which part of the dispatch catalogue (派单目录) an item belongs to."""

    ENFORCEMENT = "enforcement"  # 事项清单: an administrative enforcement matter
    SERVICE = "service"  # 公共服务诉求: a request a responsible body fixes (no enforcement)


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    UTILITIES = "utilities"
    GENERAL = "general"
    COMPLEX = "complex"


M = TypeVar("M", bound=BaseModel)


# The shape of every code the county's data uses — townships (T03), villages (T03V01), grids
# (T03V01G01), departments (CGJ), units (T03-CGJ), staff (S001), matters (SC-005) — for an
# edge that takes a code from a request: anything else names nothing, and a character such as
# U+0000, which PostgreSQL cannot hold, never reaches a query.
CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Grid(_Strict):
    id: str
    name: str
    # GeoJSON Polygon coordinates ([[[lon, lat], ...]]); optional until a county surveys its grids.
    polygon: list[list[tuple[float, float]]] | None = None


class Village(_Strict):
    code: str
    name: str
    kind: Literal["村", "社区", "嘎查"]
    grids: list[Grid] = Field(min_length=1)


class Township(_Strict):
    code: str
    name: str
    kind: Literal["乡", "镇", "街道", "苏木"]
    villages: list[Village] = Field(min_length=1)


class County(_Strict):
    # The tenant's name on every event, row and token (contracts/tenancy.py).
    code: str = Field(pattern=COUNTY_PATTERN)
    name: str
    timezone: str = "Asia/Shanghai"
    # The two letters the county's tracking numbers start with (QX20261121-482913): a
    # citizen's number is unique across the city and says where it belongs.
    tracking_prefix: str = Field(default="QX", pattern=r"^[A-Z]{2}$")
    townships: list[Township] = Field(min_length=1)


class Department(_Strict):
    code: str
    name: str
    domain: Domain
    # "team": one of the 9 county teams that second officers; "coordinated": an N unit's parent.
    kind: Literal["team", "coordinated"]


class Certificate(_Strict):
    """执法证: only staff holding a valid one may enforce."""

    number: str
    valid_from: date
    valid_until: date

    def valid_on(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_until


class Staff(_Strict):
    id: str
    name: str
    role: Literal["captain", "deputy", "member", "officer", "liaison"]
    certificate: Certificate | None = None
    villages: list[str] = []  # seconded officers answer for 1-2 villages


class UnitKind(StrEnum):
    TOWNSHIP_TEAM = "township_team"  # the township's comprehensive enforcement team (the "7")
    SECONDED_SQUAD = "seconded_squad"  # officers seconded by one county team (the "9")
    COORDINATED_UNIT = "coordinated_unit"  # police station, judicial office, ... (the "N")
    COUNTY_DEPARTMENT = "county_department"  # the department's own county-level team
    # Bodies that answer public-service requests (派单目录's service part), not enforcement:
    SERVICE_STATION = "service_station"  # a township's 城建办, 环卫所 ...
    UTILITY = "utility"  # 供电所, 自来水公司, 燃气公司 ...


# Units that carry no enforcement power: an enforcement matter is never given to one.
SERVICE_BODY_KINDS = frozenset({UnitKind.SERVICE_STATION, UnitKind.UTILITY})


class Unit(_Strict):
    id: str
    name: str
    kind: UnitKind
    township: str | None = None
    department: str | None = None
    domain: Domain | None = None
    staff: list[Staff] = Field(min_length=1)


class KeywordRule(_Strict):
    word: str
    weight: float = Field(default=1.0, gt=0)


class EntrustedCeiling(_Strict):
    """How far a penalty may go that a township decides in an entrusting department's name (委托):
    which kinds, and a fine up to ``max_fine_yuan`` yuan. Beyond it the matter goes back to the
    department ("部分行政处罚权(指行政警告权和小额的行政罚款权)")."""

    penalties: list[PenaltyKind] = Field(min_length=1)
    max_fine_yuan: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _a_limit_with_a_fine(self) -> EntrustedCeiling:
        if (PenaltyKind.FINE in self.penalties) != (self.max_fine_yuan is not None):
            raise ValueError("max_fine_yuan is given with the fine kind, and only with it")
        return self


# The ceiling of an entrusted item whose catalogue entry states none: a warning, or a fine up
# to 200 yuan — what 行政处罚法 art. 51 lets an officer decide on the spot against a citizen,
# the smallest of the "小额罚款" the entrustment documents speak of.
DEFAULT_ENTRUSTED_CEILING = EntrustedCeiling(
    penalties=[PenaltyKind.WARNING, PenaltyKind.FINE], max_fine_yuan=200
)


class MatterItem(_Strict):
    """One item of the dispatch catalogue. An enforcement item (事项清单) names its legal basis,
    action and authority type; a service item (公共服务诉求, ``kind: service``) names none of
    them but the body responsible for fixing it (``responsible_body``)."""

    code: str
    kind: MatterKind = MatterKind.ENFORCEMENT
    name: str
    major_category: str
    minor_category: str
    domain: Domain | None = None
    action_type: Literal["inspection", "penalty", "licence", "coercive_measure"] | None = None
    legal_basis: str | None = None
    authority: Authority | None = None
    tier: Literal["core", "optional"] | None = None  # 基本盘 must be claimed, 自选盘 may be
    lead_department: str | None = None
    supporting_departments: list[str] = []
    default_urgency: Urgency = Urgency.GENERAL
    deadline_policy: str
    keywords: list[KeywordRule] = Field(min_length=1)
    open311_service_code: str | None = None
    # Where the public Open311 feed puts a request of this matter: ``coarse`` shows the
    # citizen's address and the point rounded to about 100 m; ``withheld`` is for matters whose
    # place names the reporter (noise next door, a neighbour's dog, one's own employer): no
    # address of theirs, the grid's name and centre instead (docs/privacy.md).
    public_location: Literal["coarse", "withheld"] = "coarse"
    # Entrusted (委托) items only: the penalties a township may decide in the department's name.
    entrusted_ceiling: EntrustedCeiling | None = None
    # Service items only: the body that fixes it, by code: the unit ``<township>-<code>`` of the
    # case's township when the township has one of a service body's kind (城建办 CJB, 环卫所
    # HWS, 供电所 GDS), else the
    # county-level unit ``<code>-COUNTY`` (自来水公司 ZLS, a county department such as JTYSJ).
    responsible_body: str | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> MatterItem:
        enforcement = {
            "domain": self.domain,
            "action_type": self.action_type,
            "legal_basis": self.legal_basis,
            "authority": self.authority,
            "tier": self.tier,
            "lead_department": self.lead_department,
        }
        if self.kind is MatterKind.ENFORCEMENT:
            missing = [name for name, value in enforcement.items() if value is None]
            if missing or self.responsible_body is not None:
                raise ValueError(
                    f"an enforcement item needs {', '.join(missing) or 'no responsible_body'}"
                    + (" and takes no responsible_body" if self.responsible_body else "")
                )
        else:
            # A street light has no legal basis, no authority type and needs no certificate.
            given = [name for name, value in enforcement.items() if value is not None]
            if self.entrusted_ceiling is not None or self.supporting_departments:
                given.append("entrusted_ceiling/supporting_departments")
            if given or self.responsible_body is None:
                raise ValueError(
                    "a service item names its responsible_body and none of "
                    + ", ".join(given or ["the enforcement fields"])
                )
        return self

    @property
    def is_service(self) -> bool:
        return self.kind is MatterKind.SERVICE

    @property
    def ceiling(self) -> EntrustedCeiling | None:
        """The entrusted ceiling in force: the item's own, else the default; None for an item
        that is not entrusted (no ceiling beyond the law's)."""
        if self.authority is not Authority.ENTRUSTED:
            return None
        return self.entrusted_ceiling or DEFAULT_ENTRUSTED_CEILING


class MajorDecision(_Strict):
    """One entry of the county's 重大执法决定 list: a penalty decision imposing ``kind`` (for a
    fine, above ``above_yuan`` yuan) takes effect only after legal review (法制审核)."""

    label: str = Field(min_length=1)
    kind: PenaltyKind
    above_yuan: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _an_amount_for_a_fine(self) -> MajorDecision:
        if self.above_yuan is not None and self.kind is not PenaltyKind.FINE:
            raise ValueError("above_yuan is for the fine kind only")
        return self


class Catalogue(_Strict):
    version: str
    items: list[MatterItem] = Field(min_length=1)
    # 重大执法决定法制审核目录: the penalty decisions that wait for a legal reviewer.
    major_decisions: list[MajorDecision] = []


class TownshipClaims(_Strict):
    township: str
    items: list[str]


class WhistleReason(_Strict):
    """A reason code a township may give for a whistle (吹), and when it allows one."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    description: str = ""
    authorities: list[Authority] = []
    # Also allowed for a matter the township has not claimed, whatever its authority type.
    or_unclaimed: bool = False
    urgencies: list[Urgency] = []
    statuses: list[CaseStatus] = []
    requires_supporting_departments: bool = False
    min_reopens: int = Field(default=0, ge=0)


class NoWhistleRule(_Strict):
    """A "不吹" rule: a check the software knows by name, and the reasons that override it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    when: Literal["claimed_and_alone", "department_not_responsible", "already_summoned"]
    unless_reasons: list[str] = []


class WhistleRules(_Strict):
    """The county's 两吹两不吹, as eligibility rules (deploy/config/whistle_rules.yaml)."""

    version: str
    placeholder: bool = False
    automatic_reason: str
    reasons: list[WhistleReason] = Field(min_length=1)
    no_whistle: list[NoWhistleRule] = []

    def reason(self, code: str) -> WhistleReason | None:
        return next((r for r in self.reasons if r.code == code), None)


class ReferenceDataError(Exception):
    """The reference data is invalid; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class ReferenceData:
    """One validated, immutable version of the county's reference data, with lookups."""

    def __init__(
        self,
        county: County,
        departments: list[Department],
        units: list[Unit],
        catalogue: Catalogue,
        claims: list[TownshipClaims],
        version: str,
        whistle_rules: WhistleRules | None = None,
        inspections: InspectionPlans | None = None,
    ) -> None:
        self.county = county
        # None for a county built by hand without rules: then no manual whistle is eligible.
        self.whistle_rules = whistle_rules
        # None for a county built by hand without plans: every township still inspects on
        # Tuesday (综合查一次), with its team and seconded squads.
        self.inspection_plans = resolve_inspection_plans(
            inspections or InspectionPlans(version="none"), county, units
        )
        self.departments = {d.code: d for d in departments}
        self.units = {u.id: u for u in units}
        self.catalogue = catalogue
        self.items = {i.code: i for i in catalogue.items}
        self.claims = {c.township: frozenset(c.items) for c in claims}
        self.version = version
        self.townships = {t.code: t for t in county.townships}
        self.villages = {v.code: (t, v) for t in county.townships for v in t.villages}
        self.grids = {
            g.id: (t, v, g) for t in county.townships for v in t.villages for g in v.grids
        }

    @cached_property
    def keyword_index(self) -> KeywordIndex:
        """The catalogue's keywords, folded once, and the items listing each; built on first use."""
        return KeywordIndex([rule.word for rule in item.keywords] for item in self.catalogue.items)

    @cached_property
    def segmenter(self) -> KeywordSegmenter:
        """jieba with this catalogue's keywords in its dictionary; built on first use."""
        return KeywordSegmenter(self.keyword_index.uses)

    @cached_property
    def grid_locator(self) -> GridLocator:
        """The grid polygons in a spatial index; built on first use."""
        return GridLocator(
            (grid.id, grid.polygon) for _, _, grid in self.grids.values() if grid.polygon
        )

    def prepare(self) -> None:
        """Build the keyword index, the segmenter and the spatial index now rather than on the
        first tip."""
        _ = self.keyword_index, self.segmenter, self.grid_locator

    def responsible_unit(self, item: MatterItem, township: str | None) -> Unit | None:
        """The body that fixes a service item in ``township``: the township's own station or
        utility office if it has one, else the county-level one; None for an enforcement item."""
        return responsible_unit(item, township, self.units)

    def units_of_township(self, township: str) -> list[Unit]:
        return [u for u in self.units.values() if u.township == township]

    def department_codes(self) -> list[str]:
        return sorted(self.departments)


def responsible_unit(item: MatterItem, township: str | None, units: dict[str, Unit]) -> Unit | None:
    """See :meth:`ReferenceData.responsible_unit`; also used while validating."""
    if item.responsible_body is None:
        return None
    own = units.get(f"{township}-{item.responsible_body}") if township else None
    if own is not None and own.kind in SERVICE_BODY_KINDS:
        return own
    # A township's seconded squad of the same code enforces; the request is the county's.
    return units.get(f"{item.responsible_body}-COUNTY")


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading (the C parser when PyYAML has libyaml: ~10x faster on the sample county)
    that refuses a key given twice in one mapping, which YAML would otherwise let win silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


@lru_cache(maxsize=64)
def _parsed_yaml(text: bytes) -> object:
    """The document in ``text``, parsed once per content: a reload reparses only the files that
    changed, and a process that starts services again and again (the test suite) does not spend
    a sixth of its integration CPU building the same mappings. Read only: the pydantic models
    validated from it copy what they keep (yaml.YAMLError is raised, never cached)."""
    return yaml.load(text, Loader=_StrictLoader)


CONFIG_FILES = (
    "county.yaml",
    "departments.yaml",
    "units.yaml",
    "catalogue.yaml",
    "claims.yaml",
    "whistle_rules.yaml",
    "inspections.yaml",
)

SHARED_FILES = frozenset({"departments.yaml", "catalogue.yaml", "whistle_rules.yaml"})
"""The files another county may leave out of its directory to take the default county's: the
province's catalogue, rules and departments' codes. Its geography, units and claims are its own."""

DEFAULT_INSPECTIONS = b"version: default\n"
"""What another county without an ``inspections.yaml`` of its own plans by: the default rule,
each township's 综合查一次 on Tuesday with its team and seconded squads, no patrol routes. Not
the default county's file, which names the default county's townships and units."""


def county_directories(config_dir: Path) -> list[Path]:
    """The directories of the counties beside the default one: ``<config_dir>/<code>/``, each
    named by its 6-digit division code (docs/scale.md, "Tenancy")."""
    if not config_dir.is_dir():
        return []
    return sorted(
        path
        for path in config_dir.iterdir()
        if path.is_dir() and is_county_code(path.name) and (path / "county.yaml").is_file()
    )


def load_reference(config_dir: Path, county: str | None = None) -> ReferenceData:
    """Read, validate and cross-check one county's reference data: the default county's (the
    files directly in ``config_dir``), or ``county``'s (``config_dir/<county>/``, taking the
    shared files it lacks from the default). ReferenceDataError lists all reasons."""
    if county is None:
        return _load_county(config_dir, config_dir)
    directory = config_dir / county
    if county not in {d.name for d in county_directories(config_dir)}:
        default = _load_county(config_dir, config_dir)
        if default.county.code == county:
            return default
        raise ReferenceDataError([f"no county {county} under {config_dir}"])
    return _load_county(directory, config_dir)


def _load_county(directory: Path, config_dir: Path) -> ReferenceData:
    raw: dict[str, object] = {}
    digest = hashlib.sha256()
    reasons: list[str] = []
    where = "" if directory == config_dir else f"{directory.name}/"
    for name in CONFIG_FILES:
        path = directory / name
        if where and name in SHARED_FILES and not path.exists():
            path = config_dir / name
        try:
            if where and name == "inspections.yaml" and not path.exists():
                text = DEFAULT_INSPECTIONS
            else:
                text = path.read_bytes()
        except OSError as exc:
            reasons.append(f"{where}{name}: cannot read ({exc.strerror})")
            continue
        digest.update(name.encode() + b"\0" + text + b"\0")
        try:
            raw[name] = _parsed_yaml(text)
        except yaml.YAMLError as exc:
            reasons.append(f"{where}{name}: not valid YAML ({exc})")
    if reasons:
        raise ReferenceDataError(reasons)

    county = _parse_one(raw["county.yaml"], County, "county.yaml", reasons)
    departments = _parse_list(raw["departments.yaml"], Department, "departments.yaml", reasons)
    units = _parse_list(raw["units.yaml"], Unit, "units.yaml", reasons)
    catalogue = _parse_one(raw["catalogue.yaml"], Catalogue, "catalogue.yaml", reasons)
    claims = _parse_list(raw["claims.yaml"], TownshipClaims, "claims.yaml", reasons)
    rules = _parse_one(raw["whistle_rules.yaml"], WhistleRules, "whistle_rules.yaml", reasons)
    plans = _parse_one(raw["inspections.yaml"], InspectionPlans, "inspections.yaml", reasons)
    if county is None or catalogue is None or rules is None or plans is None or reasons:
        raise ReferenceDataError([where + reason for reason in reasons])

    reasons.extend(_cross_check(county, departments, units, catalogue, claims))
    reasons.extend(_check_whistle_rules(rules))
    reasons.extend(_check_inspection_plans(plans, county, units))
    if where and county.code != directory.name:
        reasons.append(f"county.yaml: code {county.code} is not its directory's name")
    if reasons:
        raise ReferenceDataError([where + reason for reason in reasons])
    version = f"{catalogue.version}+{digest.hexdigest()[:12]}"
    return ReferenceData(county, departments, units, catalogue, claims, version, rules, plans)


class CountySet(Mapping[str, ReferenceData]):
    """Every county a deployment serves, by division code, each with its own reference data;
    ``default`` is the one whose files lie directly in the configuration directory: what an
    event, a row or a token that names no county belongs to."""

    def __init__(self, default: ReferenceData, others: list[ReferenceData]) -> None:
        self.default = default
        self._by_code = {c.county.code: c for c in [default, *others]}
        self._grids = {grid: c.county.code for c in self._by_code.values() for grid in c.grids}

    def __getitem__(self, code: str) -> ReferenceData:
        return self._by_code[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_code)

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def tenancy(self) -> Counties:
        return Counties(self.default.county.code, frozenset(self._by_code))

    def of(self, county: str | None) -> ReferenceData:
        """The reference data of ``county``; the default county's for None."""
        return self._by_code[self.tenancy.of(county)]

    def departments(self) -> list[BrokerDepartment]:
        """Every county's departments, as the broker knows them (their topics, users and
        ACLs): the default county's first, then each other county's under its code."""
        default = self.default.county.code
        return [
            BrokerDepartment.of(code, county, default)
            for county, reference in self._by_code.items()
            for code in reference.department_codes()
        ]

    def county_of_township(self, township: str) -> str | None:
        """The county a township lies in (township codes are unique across counties)."""
        return next((c for c, r in self._by_code.items() if township in r.townships), None)

    def county_of_grid(self, grid_id: str) -> str | None:
        """The county a grid lies in (grid ids are unique across counties)."""
        return self._grids.get(grid_id)

    def county_at(self, lat: float, lon: float) -> str | None:
        """The county whose grids hold the point, else the one with the nearest grid; None if
        no county has surveyed its grids."""
        hits = [
            (hit.distance_m, code)
            for code, reference in self._by_code.items()
            if (hit := reference.grid_locator.locate(lat, lon)) is not None
        ]
        return min(hits)[1] if hits else None

    def county_of_place(
        self, grid_id: str | None, lat: float | None, lon: float | None
    ) -> ReferenceData:
        """The county a tip belongs to by where it is: its grid's; else the one whose grids
        hold its point (or lie nearest it); else, placed by an address alone or not at all (a
        WeChat text), the default county."""
        code = self.county_of_grid(grid_id) if grid_id else None
        if code is None and lat is not None and lon is not None:
            code = self.county_at(lat, lon)
        return self.of(code)


def load_counties(config_dir: Path) -> CountySet:
    """Every county's reference data (the default one's and each ``<config_dir>/<code>/``'s),
    validated each on its own and together: codes, tracking prefixes, and the township,
    village, grid and staff codes that other services still key without a county (escalation's
    clocks, the ledger's indicators) unique across counties. ReferenceDataError lists all."""
    reasons: list[str] = []
    loaded: list[ReferenceData] = []
    for directory in [config_dir, *county_directories(config_dir)]:
        try:
            loaded.append(_load_county(directory, config_dir))
        except ReferenceDataError as exc:
            reasons.extend(exc.reasons)
    if reasons:
        raise ReferenceDataError(reasons)
    reasons.extend(_check_across(loaded))
    if reasons:
        raise ReferenceDataError(reasons)
    return CountySet(loaded[0], loaded[1:])


def county_tenancy(config_dir: Path) -> Counties:
    """Which counties ``config_dir`` holds and which is the default, from each county.yaml
    alone: what the runtime needs to stamp and admit events before any service loads its
    reference data (load_counties validates the rest)."""
    reasons: list[str] = []
    default: str | None = None
    codes: set[str] = set()
    for directory in [config_dir, *county_directories(config_dir)]:
        path = directory / "county.yaml"
        try:
            doc = _parsed_yaml(path.read_bytes())
        except (OSError, yaml.YAMLError) as exc:
            raise ReferenceDataError([f"{path}: cannot read ({exc})"]) from exc
        county = _parse_one(doc, County, str(path), reasons)
        if county is not None:
            default = default or county.code
            codes.add(county.code)
    if reasons or default is None:
        raise ReferenceDataError(reasons or [f"{config_dir}: no county.yaml"])
    return Counties(default, frozenset(codes))


def _check_across(counties: list[ReferenceData]) -> list[str]:
    reasons: list[str] = []
    for what, values in (
        ("county code", [c.county.code for c in counties]),
        ("tracking prefix", [c.county.tracking_prefix for c in counties]),
        ("township code", [t for c in counties for t in c.townships]),
        ("village code", [v for c in counties for v in c.villages]),
        ("grid id", [g for c in counties for g in c.grids]),
        ("staff id", [s.id for c in counties for u in c.units.values() for s in u.staff]),
    ):
        for dup in _duplicates(values):
            reasons.append(f"counties: {what} {dup!r} is used by more than one county")
    return reasons


def _report(exc: ValidationError, name: str, reasons: list[str], prefix: str = "") -> None:
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        reasons.append(f"{name}: {prefix}{where}: {err['msg']}")


def _parse_one(doc: object, model: type[M], name: str, reasons: list[str]) -> M | None:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        _report(exc, name, reasons)
        return None


def _parse_list(doc: object, model: type[M], name: str, reasons: list[str]) -> list[M]:
    key = name.removesuffix(".yaml")
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        reasons.append(f"{name}: expected a top-level '{key}' list")
        return []
    parsed: list[M] = []
    for index, entry in enumerate(doc[key]):
        try:
            parsed.append(model.model_validate(entry))
        except ValidationError as exc:
            _report(exc, name, reasons, prefix=f"{key}[{index}].")
    return parsed


def _duplicates(values: list[str]) -> list[str]:
    return sorted(v for v, n in Counter(values).items() if n > 1)


def _unit_matches_department(unit: Unit, departments: dict[str, Department]) -> list[str]:
    """A squad is seconded by one of the 9 teams, an N unit belongs to an N parent, and a unit
    works in its department's domain; the township's own team has no domain of its own."""
    if unit.kind is UnitKind.TOWNSHIP_TEAM or unit.kind in SERVICE_BODY_KINDS:
        # Neither the township's own team nor a service body works in one county team's domain.
        return [f"unit {unit.id}: a {unit.kind.value} has no domain"] if unit.domain else []
    department = departments.get(unit.department or "")
    if department is None:
        return [] if unit.department else [f"unit {unit.id}: names no department"]
    reasons = []
    expected_kind = {UnitKind.SECONDED_SQUAD: "team", UnitKind.COORDINATED_UNIT: "coordinated"}
    wanted = expected_kind.get(unit.kind)
    if wanted and department.kind != wanted:
        reasons.append(
            f"unit {unit.id}: a {unit.kind.value} cannot belong to {department.code}, "
            f"which is a {department.kind} department"
        )
    if unit.domain is not None and unit.domain is not department.domain:
        reasons.append(
            f"unit {unit.id}: domain {unit.domain.value} differs from its department's "
            f"({department.domain.value})"
        )
    return reasons


def _cross_check(
    county: County,
    departments: list[Department],
    units: list[Unit],
    catalogue: Catalogue,
    claims: list[TownshipClaims],
) -> list[str]:
    reasons: list[str] = []
    townships = {t.code: t for t in county.townships}
    village_codes = [v.code for t in county.townships for v in t.villages]
    grid_ids = [g.id for t in county.townships for v in t.villages for g in v.grids]
    dept_codes = {d.code for d in departments}
    item_codes = {i.code for i in catalogue.items}
    for what, values in (
        ("township code", [t.code for t in county.townships]),
        ("village code", village_codes),
        ("grid id", grid_ids),
        ("department code", [d.code for d in departments]),
        ("unit id", [u.id for u in units]),
        ("staff id", [s.id for u in units for s in u.staff]),
        ("matter code", [i.code for i in catalogue.items]),
    ):
        for dup in _duplicates(values):
            reasons.append(f"duplicate {what} {dup!r}")

    for township in county.townships:
        for village in township.villages:
            for grid in village.grids:
                problem = polygon_problem(grid.polygon) if grid.polygon is not None else None
                if problem:
                    reasons.append(f"grid {grid.id}: invalid polygon ({problem})")

    departments_by_code = {d.code: d for d in departments}
    for domain in sorted(SECONDED_DOMAINS - {d.domain for d in departments if d.kind == "team"}):
        reasons.append(f"departments: no county team for the {domain} domain")
    for unit in units:
        if unit.township is not None and unit.township not in townships:
            reasons.append(f"unit {unit.id}: unknown township {unit.township!r}")
            continue
        if unit.department is not None and unit.department not in dept_codes:
            reasons.append(f"unit {unit.id}: unknown department {unit.department!r}")
        reasons.extend(_unit_matches_department(unit, departments_by_code))
        county_level = (UnitKind.COUNTY_DEPARTMENT, UnitKind.UTILITY)
        if unit.kind not in county_level and unit.township is None:
            reasons.append(f"unit {unit.id}: a {unit.kind.value} must name its township")
        if unit.kind is UnitKind.UTILITY and unit.id.endswith("-COUNTY") != (unit.township is None):
            reasons.append(f"unit {unit.id}: a county-wide utility is <code>-COUNTY, no township")
        has_domain = unit.kind is not UnitKind.TOWNSHIP_TEAM and unit.kind not in SERVICE_BODY_KINDS
        if has_domain and unit.domain is None:
            reasons.append(f"unit {unit.id}: a {unit.kind.value} must name its domain")
        township = townships.get(unit.township or "")
        own_villages = {v.code for v in township.villages} if township else set()
        for person in unit.staff:
            for village in person.villages:
                if village not in own_villages:
                    reasons.append(
                        f"staff {person.id}: village {village!r} is not in township "
                        f"{unit.township!r}"
                    )

    for code, township in townships.items():
        own = [u for u in units if u.township == code]
        teams = [u for u in own if u.kind is UnitKind.TOWNSHIP_TEAM]
        if len(teams) != 1:
            reasons.append(f"township {code}: needs exactly one township team, has {len(teams)}")
        elif len(teams[0].staff) < 7:
            reasons.append(f"township {code}: the township team has fewer than 7 staff")
        seconded = {u.domain for u in own if u.kind is UnitKind.SECONDED_SQUAD}
        for missing in sorted(SECONDED_DOMAINS - seconded):
            reasons.append(f"township {code} ({township.name}): no seconded squad for {missing}")

    not_claimable = {Authority.COUNTY_ONLY, Authority.OUT_OF_LIST}
    units_by_id = {u.id: u for u in units}
    for item in catalogue.items:
        if item.is_service:
            reasons.extend(_check_service_item(item, list(townships), units_by_id))
            continue
        if item.tier == "core" and item.authority in not_claimable:
            reasons.append(f"matter {item.code}: a {item.authority.value} item cannot be core")
        for dept in [item.lead_department or "", *item.supporting_departments]:
            if dept not in dept_codes:
                reasons.append(f"matter {item.code}: unknown department {dept!r}")
        if item.entrusted_ceiling is not None and item.authority is not Authority.ENTRUSTED:
            reasons.append(
                f"matter {item.code}: an entrusted_ceiling is for entrusted items, "
                f"not {item.authority.value}"
            )
        if item.entrusted_ceiling is not None and item.action_type != "penalty":
            reasons.append(f"matter {item.code}: an entrusted_ceiling needs action_type penalty")

    claimed_townships = [c.township for c in claims]
    for dup in _duplicates(claimed_townships):
        reasons.append(f"claims: township {dup!r} listed twice")
    core = {i.code for i in catalogue.items if i.tier == "core"}
    items = {i.code: i for i in catalogue.items}
    for claim in claims:
        if claim.township not in townships:
            reasons.append(f"claims: unknown township {claim.township!r}")
        for code in sorted(set(claim.items) - item_codes):
            reasons.append(f"claims {claim.township}: unknown matter {code!r}")
        for code in sorted(
            c
            for c in claim.items
            if c in items and (items[c].authority in not_claimable or items[c].is_service)
        ):
            reasons.append(f"claims {claim.township}: {code!r} is not a township's to claim")
        for code in sorted(core - set(claim.items)):
            reasons.append(f"claims {claim.township}: core matter {code!r} must be claimed")
    for code in sorted(set(townships) - set(claimed_townships)):
        reasons.append(f"claims: township {code!r} has no claims")
    return reasons


def _check_service_item(
    item: MatterItem, townships: list[str], units: dict[str, Unit]
) -> list[str]:
    """A service item reaches a body that fixes things in every township: a service station or
    utility (the township's own, else the county's), or a county department's own unit."""
    answerable = SERVICE_BODY_KINDS | {UnitKind.COUNTY_DEPARTMENT}
    reasons: list[str] = []
    for township in townships:
        unit = responsible_unit(item, township, units)
        if unit is None:
            reasons.append(
                f"matter {item.code}: no responsible body {item.responsible_body!r} in "
                f"township {township} (no unit {township}-{item.responsible_body} nor "
                f"{item.responsible_body}-COUNTY)"
            )
            break
        if unit.kind not in answerable:
            reasons.append(
                f"matter {item.code}: responsible body {unit.id} is a {unit.kind.value}, "
                "not a service station, utility or county department"
            )
            break
    return reasons


def _check_whistle_rules(rules: WhistleRules) -> list[str]:
    name = "whistle_rules.yaml"
    codes = [r.code for r in rules.reasons]
    reasons = [f"{name}: duplicate reason code {dup!r}" for dup in _duplicates(codes)]
    reasons += [
        f"{name}: duplicate rule name {dup!r}"
        for dup in _duplicates([r.name for r in rules.no_whistle])
    ]
    if rules.automatic_reason not in codes:
        reasons.append(f"{name}: automatic_reason {rules.automatic_reason!r} is not a reason code")
    for rule in rules.no_whistle:
        for code in rule.unless_reasons:
            if code not in codes:
                reasons.append(f"{name}: rule {rule.name}: unknown reason code {code!r}")
    for reason in rules.reasons:
        if CaseStatus.CLOSED in reason.statuses:
            reasons.append(f"{name}: reason {reason.code}: a closed case cannot be whistled on")
    return reasons


# The units of 综合查一次 when a township names none: its own team and its seconded squads.
JOINT_INSPECTION_KINDS = (UnitKind.TOWNSHIP_TEAM, UnitKind.SECONDED_SQUAD)


def resolve_inspection_plans(
    plans: InspectionPlans, county: County, units: list[Unit]
) -> tuple[InspectionPlan, ...]:
    """Every plan in force: each township's 综合查一次 (its own day and units, else Tuesday with
    its team and seconded squads), then the patrol routes."""
    own = {day.township: day for day in plans.joint_inspection_days}
    unit_township = {u.id: u.township for u in units}
    resolved = []
    for township in county.townships:
        day = own.get(township.code)
        taking_part = (
            day.units
            if day is not None and day.units is not None
            else [
                u.id
                for u in units
                if u.township == township.code and u.kind in JOINT_INSPECTION_KINDS
            ]
        )
        weekday = day.weekday if day is not None else DEFAULT_JOINT_DAY
        resolved.append(
            InspectionPlan(
                id=joint_plan_id(township.code),
                kind="joint",
                name=f"{township.name}综合查一次",
                township=township.code,
                units=tuple(taking_part),
                grids=(),
                weekdays=frozenset({weekday_number(weekday)}),
            )
        )
    for route in plans.patrol_routes:
        resolved.append(
            InspectionPlan(
                id=route.id,
                kind="patrol",
                name=route.name,
                township=unit_township.get(route.unit) or "",
                units=(route.unit,),
                grids=tuple(route.grids),
                weekdays=frozenset(weekday_number(d) for d in route.weekdays),
            )
        )
    return tuple(resolved)


def _check_inspection_plans(plans: InspectionPlans, county: County, units: list[Unit]) -> list[str]:
    """Every township, unit and grid a plan names exists, and a patrol's unit walks grids of its
    own township; a township or route is planned once."""
    name = "inspections.yaml"
    townships = {t.code for t in county.townships}
    grid_township = {g.id: t.code for t in county.townships for v in t.villages for g in v.grids}
    unit_of = {u.id: u for u in units}
    reasons = [
        f"{name}: township {dup!r} has two joint inspection days"
        for dup in _duplicates([d.township for d in plans.joint_inspection_days])
    ]
    reasons += [
        f"{name}: duplicate patrol route {dup!r}"
        for dup in _duplicates([r.id for r in plans.patrol_routes])
    ]
    for day in plans.joint_inspection_days:
        if day.township not in townships:
            reasons.append(f"{name}: unknown township {day.township!r}")
            continue
        for unit_id in day.units or []:
            unit = unit_of.get(unit_id)
            if unit is None:
                reasons.append(f"{name}: {day.township}: unknown unit {unit_id!r}")
            elif unit.township != day.township:
                reasons.append(f"{name}: {day.township}: unit {unit_id} is not the township's")
    for route in plans.patrol_routes:
        unit = unit_of.get(route.unit)
        if unit is None or unit.township is None:
            reasons.append(f"{name}: route {route.id}: unknown township unit {route.unit!r}")
            continue
        for grid in route.grids:
            if grid not in grid_township:
                reasons.append(f"{name}: route {route.id}: unknown grid {grid!r}")
            elif grid_township[grid] != unit.township:
                reasons.append(
                    f"{name}: route {route.id}: grid {grid} is not in {unit.id}'s township"
                )
    return reasons
