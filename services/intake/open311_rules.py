"""How Whistle looks through GeoReport v2: services, their attributes, request filters, statuses.

Services are the matter catalogue's citizen-facing categories: every distinct
``open311_service_code`` is one service, whichever catalogue items share it. Everything here is
a plain function of its inputs (catalogue items, form fields, query parameters, the time);
``services/intake/open311.py`` does the HTTP.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import shapely

from reference.county import Grid, MatterItem, Township, Village
from services.intake.contact import redact_contacts
from services.intake.models import Tip
from services.intake.open311_format import w3c

Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]

# What a request may carry and look back on, as the spec has it.
MAX_TEXT = 4000
MAX_RANGE = timedelta(days=90)
MAX_RESULTS = 1000

# Internal statuses (services/intake/consumers.py) as GeoReport's two: "closed" once the work is
# done — resolved and waiting for the citizen's rating, or closed for good. A reopened case
# moves its tip back to in_progress, so it reads "open" again.
OPEN311_STATUS: dict[str, Literal["open", "closed"]] = {
    "received": "open",
    "triage": "open",
    "assigned": "open",
    "in_progress": "open",
    "resolved": "closed",
    "closed": "closed",
}


class InvalidRequest(Exception):
    """The client's input does not fit the spec or the service: a 400 for the client to fix."""


@dataclass(frozen=True)
class Choice:
    key: str
    name: str


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: Datatype
    description: str  # the question shown to the citizen
    label: str  # how the answer is labelled in the tip's text
    datatype_description: str
    required: bool = False
    values: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    matters: tuple[Choice, ...]
    attributes: tuple[Attribute, ...]
    # The category hints whose requests are published without the citizen's place: each
    # matter marked ``public_location: withheld``, and the service's own code when any of its
    # matters is (a request that names only the service might be that matter).
    withheld: frozenset[str] = frozenset()

    def hints(self) -> frozenset[str]:
        """Every category hint a tip of this service may carry: its code or a matter code."""
        return frozenset({self.code, *(m.key for m in self.matters)})


# How the location_detail answer (door number, floor, landmark) is labelled in the tip's text.
LOCATION_DETAIL_LABEL = "位置补充"

OCCURRENCE = (
    Choice("morning", "上午"),
    Choice("afternoon", "下午"),
    Choice("evening", "傍晚"),
    Choice("night", "夜间"),
    Choice("ongoing", "一直存在"),
)


def _attributes(matters: tuple[Choice, ...]) -> tuple[Attribute, ...]:
    """What every service asks for, all optional, so a plain client can report without them;
    the matter choice lets a citizen say which of the service's matters it is."""
    return (
        Attribute(
            "matter",
            "singlevaluelist",
            "具体属于哪一类事项？",
            "具体事项",
            "从列表中选择一项",
            values=matters,
        ),
        Attribute(
            "observed_at",
            "datetime",
            "什么时候发现的？",
            "发现时间",
            "ISO 8601 时间，带时区，例如 2026-11-20T08:30:00+08:00",
        ),
        Attribute(
            "people_affected", "number", "大约有多少人受到影响？", "受影响人数", "数字，例如 20"
        ),
        Attribute(
            "location_detail",
            "string",
            "具体位置补充（门牌号、楼层、标志物等）",
            LOCATION_DETAIL_LABEL,
            "一行文字，不超过 200 字",
        ),
        Attribute(
            "occurrence",
            "multivaluelist",
            "通常在什么时段发生？",
            "发生时段",
            "可多选",
            values=OCCURRENCE,
        ),
        Attribute(
            "details", "text", "还有什么需要说明的情况？", "其他情况", "可换行，不超过 2000 字"
        ),
    )


def services_from_catalogue(items: Iterable[MatterItem]) -> dict[str, Service]:
    """One service per distinct service code, in catalogue order; items without one stay
    internal (the hotline and dispatchers still reach them)."""
    grouped: dict[str, list[MatterItem]] = {}
    for item in items:
        if item.open311_service_code:
            grouped.setdefault(item.open311_service_code, []).append(item)
    services = {}
    for code, members in grouped.items():
        first = members[0]
        if len(members) == 1:
            name = first.name
        elif len({m.minor_category for m in members}) == 1:
            name = first.minor_category
        else:
            name = f"{first.name}等"
        keywords = dict.fromkeys(rule.word for m in members for rule in m.keywords)
        matters = tuple(Choice(m.code, m.name) for m in members)
        withheld = {m.code for m in members if m.public_location == "withheld"}
        services[code] = Service(
            code=code,
            name=name,
            description="；".join(
                f"{m.name}（{m.legal_basis}）" if m.legal_basis else m.name for m in members
            ),
            group=first.major_category,
            keywords=tuple(keywords),
            matters=matters,
            attributes=_attributes(matters),
            withheld=frozenset(withheld | {code} if withheld else ()),
        )
    return services


@dataclass(frozen=True)
class Answer:
    attribute: Attribute
    values: tuple[str, ...]

    def shown(self, timezone: str) -> str:
        """The answer as staff read it in the tip: names for choices, county time for times."""
        kind = self.attribute.datatype
        if kind in ("singlevaluelist", "multivaluelist"):
            names = {c.key: c.name for c in self.attribute.values}
            return "、".join(names[v] for v in self.values)
        if kind == "datetime":
            moment = parse_w3c(self.values[0], timezone)
            return f"{moment.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}"
        return self.values[0]


_ATTRIBUTE_FIELD = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
_LIMITS: dict[Datatype, int] = {"string": 200, "text": 2000, "number": 32, "datetime": 40}


def parse_attributes(
    fields: Sequence[tuple[str, str]], service: Service, timezone: str
) -> list[Answer]:
    """``attribute[code]=v`` and, for a multivaluelist, ``attribute[code][]=v`` repeated,
    checked against the service definition; in the definition's order."""
    given: dict[str, list[str]] = {}
    for name, value in fields:
        match = _ATTRIBUTE_FIELD.match(name)
        if match is None:
            if name.startswith("attribute"):
                raise InvalidRequest(f"{name} is not of the form attribute[code]")
            continue
        if value.strip():  # an empty parameter is one not given (the spec's optional rule)
            given.setdefault(match.group(1), []).append(value.strip())
    known = {a.code: a for a in service.attributes}
    for code in given:
        if code not in known:
            raise InvalidRequest(f"attribute[{code}] is not defined for service {service.code}")
    answers = []
    for attribute in service.attributes:
        values = given.get(attribute.code)
        if not values:
            if attribute.required:
                raise InvalidRequest(f"attribute[{attribute.code}] is required")
            continue
        answers.append(Answer(attribute, _checked(attribute, values, timezone)))
    return answers


def _checked(attribute: Attribute, values: list[str], timezone: str) -> tuple[str, ...]:
    code, kind = attribute.code, attribute.datatype
    if kind == "multivaluelist":
        keys = {c.key for c in attribute.values}
        unknown = [v for v in values if v not in keys]
        if unknown:
            raise InvalidRequest(f"attribute[{code}] has no value {unknown[0]!r}")
        return tuple(dict.fromkeys(values))
    if len(values) > 1:
        raise InvalidRequest(f"attribute[{code}] takes one value")
    value = values[0]
    if kind == "singlevaluelist":
        if value not in {c.key for c in attribute.values}:
            raise InvalidRequest(f"attribute[{code}] has no value {value!r}")
        return (value,)
    if len(value) > _LIMITS[kind]:
        raise InvalidRequest(f"attribute[{code}] is longer than {_LIMITS[kind]} characters")
    if kind == "string" and ("\n" in value or "\r" in value):
        raise InvalidRequest(f"attribute[{code}] is a single line")
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            raise InvalidRequest(f"attribute[{code}] is not a number") from None
        if not math.isfinite(number):
            raise InvalidRequest(f"attribute[{code}] is not a number")
    if kind == "datetime":
        try:
            parse_w3c(value, timezone)
        except ValueError:
            raise InvalidRequest(f"attribute[{code}] is not an ISO 8601 datetime") from None
    return (value,)


def category_hint(service: Service, answers: Sequence[Answer]) -> str:
    """The matter the citizen picked, if any (dispatch takes a matter code as readily as a
    service code, and it is the more precise); else the service code."""
    for answer in answers:
        if answer.attribute.code == "matter":
            return answer.values[0]
    return service.code


def tip_text(
    description: str | None,
    service: Service,
    answers: Sequence[Answer],
    media_url: str | None,
    timezone: str,
) -> str:
    """The tip's text: the citizen's description (or the service's name when they gave none),
    then each answer on a line of its own, so what they said is in front of whoever acts."""
    lines = [description.strip() if description and description.strip() else service.name]
    lines.extend(f"【{a.attribute.label}】{a.shown(timezone)}" for a in answers)
    if media_url:
        lines.append(f"【图片链接】{media_url}")
    text = "\n".join(lines)
    if len(text) > MAX_TEXT:
        raise InvalidRequest(
            f"description and attributes together are longer than {MAX_TEXT} characters"
        )
    return text


def parse_w3c(value: str, timezone: str) -> datetime:
    """A W3C/ISO 8601 date or datetime; one without a zone is the county's local time.

    A ``+`` left unescaped in a query string arrives as a space: it is read as the ``+`` it was.
    """
    text = value.strip()
    if len(text) > 10 and text[-6] == " ":
        text = f"{text[:-6]}+{text[-5:]}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


@dataclass(frozen=True)
class RequestQuery:
    """GET requests: either the given ids (which override everything else, as the spec says),
    or a requested-time window with optional hints and statuses."""

    ids: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    hints: frozenset[str] | None = None
    statuses: frozenset[str] | None = None


def _listed(params: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in params.get(name, "").split(",") if part.strip()]


def parse_query(
    params: Mapping[str, str], services: Mapping[str, Service], now: datetime, timezone: str
) -> RequestQuery:
    ids = _listed(params, "service_request_id")
    if ids:
        if len(ids) > MAX_RESULTS:
            raise InvalidRequest(f"at most {MAX_RESULTS} service_request_id at once")
        return RequestQuery(ids=tuple(dict.fromkeys(ids)))
    dates = {}
    for name in ("start_date", "end_date"):
        raw = params.get(name, "").strip()
        if raw:
            try:
                dates[name] = parse_w3c(raw, timezone)
            except ValueError:
                raise InvalidRequest(f"{name} is not a W3C datetime") from None
    start, end = dates.get("start_date"), dates.get("end_date")
    if start is None:
        end = end or now
        start = end - MAX_RANGE
    elif end is None:
        end = start + MAX_RANGE
    if end < start:
        raise InvalidRequest("end_date is before start_date")
    if end - start > MAX_RANGE:
        raise InvalidRequest("start_date and end_date may not span more than 90 days")
    hints = None
    codes = _listed(params, "service_code")
    if codes:
        unknown = [c for c in codes if c not in services]
        if unknown:
            raise InvalidRequest(f"service_code {unknown[0]} is not a service")
        hints = frozenset().union(*(services[c].hints() for c in codes))
    statuses = None
    wanted = _listed(params, "status")
    if wanted:
        if not set(wanted) <= {"open", "closed"}:
            raise InvalidRequest("status is open, closed or both (comma delimited)")
        statuses = frozenset(s for s, shown in OPEN311_STATUS.items() if shown in wanted)
    return RequestQuery(ids=None, start=start, end=end, hints=hints, statuses=statuses)


def service_of(tip: Tip, services: Mapping[str, Service]) -> Service | None:
    hint = tip.category_hint
    if hint is None:
        return None
    return services.get(hint) or next((s for s in services.values() if hint in s.hints()), None)


# Where a tip neither names a place nor falls in a grid of the county.
NO_PLACE = "位置不详"
# How far outside every grid a point may lie and still be said to be in the nearest one.
NEAR_A_GRID_M = 500.0


# Published coordinates are rounded to this many decimals of a degree: 0.001° is 111 m north
# to south and about 87 m east to west at the county's latitude, so a point says which block,
# not which door.
PUBLIC_DECIMALS = 3

Place = tuple[Township, Village, Grid]


@dataclass(frozen=True)
class PublicPlace:
    """Where a listed request is, as anyone may read it."""

    address: str
    lat: float | None
    lon: float | None


def grid_centre(grid: Grid) -> tuple[float, float] | None:
    """(lat, lon) of the grid's centroid, or of a point surely inside it when the centroid
    falls outside (a bent grid); None for a grid without a surveyed polygon."""
    if not grid.polygon:
        return None
    polygon = shapely.Polygon(grid.polygon[0], grid.polygon[1:])
    centre = polygon.centroid
    if not polygon.contains(centre):
        centre = polygon.representative_point()
    return centre.y, centre.x


def _grid_name(place: Place) -> str:
    township, village, cell = place
    return f"{township.name}{village.name}{cell.name}"


def _coarse(value: float | None) -> float | None:
    return None if value is None else round(value, PUBLIC_DECIMALS)


def public_place(
    address: str | None,
    lat: float | None,
    lon: float | None,
    place: Place | None,
    withheld: bool,
) -> PublicPlace:
    """The ``address``, ``lat`` and ``long`` of a listed request.

    Every request carries an address — GeoReport v2 clients expect one (the open311-validator
    fails with ``KeyError: 'address'`` without it), and a bare point says nothing to a reader:
    the citizen's own words, else the township, village and grid its place lies in, else
    :data:`NO_PLACE`. The point is never the citizen's exact one: rounded to about 100 m
    (:data:`PUBLIC_DECIMALS`). For a matter whose place names the reporter (``withheld``)
    neither their words nor their point are shown: the grid's name and its centre.
    """
    named = _grid_name(place) if place is not None else NO_PLACE
    if withheld:
        centre = grid_centre(place[2]) if place is not None else None
        if centre is None:
            return PublicPlace(named, None, None)
        return PublicPlace(named, _coarse(centre[0]), _coarse(centre[1]))
    return PublicPlace(address or named, _coarse(lat), _coarse(lon))


def is_withheld(tip: Tip, services: Mapping[str, Service]) -> bool:
    service = service_of(tip, services)
    return service is not None and tip.category_hint in service.withheld


def published_description(text: str, withheld: bool) -> str:
    """The tip's words as published: numbers and e-mail addresses masked, and, where the place
    is withheld, without the door number or landmark the citizen added as location_detail."""
    if withheld:
        detail = f"【{LOCATION_DETAIL_LABEL}】"
        text = "\n".join(line for line in text.split("\n") if not line.startswith(detail))
    return redact_contacts(text)


def request_document(
    tip: Tip,
    updated_at: datetime,
    services: Mapping[str, Service],
    status_notes: str,
    place: Place | None,
) -> dict[str, object]:
    """A tip as a GeoReport service request: no contact data, no staff, only what the citizen
    reported (phone numbers and e-mail addresses in it masked), where in public terms (see
    :func:`public_place`) and where it stands."""
    service = service_of(tip, services)
    withheld = is_withheld(tip, services)
    where = public_place(tip.address, tip.lat, tip.lon, place, withheld)
    return {
        "service_request_id": tip.tracking_no,
        "status": OPEN311_STATUS.get(tip.status, "open"),
        "status_notes": status_notes,
        "service_name": service.name if service else None,
        "service_code": service.code if service else None,
        "description": published_description(tip.text, withheld),
        "requested_datetime": w3c(tip.received_at),
        "updated_datetime": w3c(max(updated_at, tip.received_at)),
        "address": where.address,
        "address_id": tip.grid_id,
        "lat": where.lat,
        "long": where.lon,
    }
