"""Open311 GeoReport v2 under ``/open311/v2/``: the catalogue's services, and tips as requests.

Every resource answers in ``.xml`` (the spec's required format) and ``.json``; every error in
the spec's ``<errors><error><code/><description/></error></errors>`` form (a JSON array of
``{code, description}``), never as problem+json, since GeoReport clients parse only that.
A posted request goes through intake's one acceptance path as channel ``open311``.

``service_request_id`` is the tip's tracking number: the number the citizen quotes to the
12345 hotline and types into the citizen page (with the access code the answer's
``service_notice`` gives them), so one report has one number whatever door it came through.
Requests are served for tips that came in through Open311 only: GeoReport lists are public by
design, and tips from the hotline, WeChat or the web were not given to be published.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Select, func, select

from contracts.events import GeoPoint
from reference.county import Grid, ReferenceData, Township, Village, load_reference
from services.intake import channels, database
from services.intake.channels import MAX_TEXT, NewTip, has_place
from services.intake.contact import PHONE
from services.intake.edges import IdempotencyKey, ProblemRoute, answer, client_address
from services.intake.models import Tip, TipTimelineEntry
from services.intake.open311_format import (
    ANNOUNCED_FORMATS,
    FORMATS,
    MEDIA_TYPES,
    Document,
    Format,
    render,
    w3c,
)
from services.intake.open311_rules import (
    MAX_RESULTS,
    NEAR_A_GRID_M,
    InvalidRequest,
    Service,
    category_hint,
    parse_attributes,
    parse_query,
    request_document,
    services_from_catalogue,
    tip_text,
)
from services.intake.tips import STATUS_TEXT
from services.runtime.limits import own_body_limit
from services.runtime.problems import BUSY, Problem, is_unavailable, retry_after, unavailable
from services.runtime.service import Runtime, RuntimeDep
from services.runtime.settings import Settings

CHANNEL = "open311"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
# A posted form is a few fields of text; anything much bigger is not a GeoReport request.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100


class Open311Error(Exception):
    def __init__(self, status: int, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = headers


def _format_of(request: Request) -> Format:
    fmt = request.path_params.get("fmt")
    return fmt if fmt in FORMATS else "xml"


def _document(request: Request, root: str, document: Document, status: int = 200) -> Response:
    fmt = _format_of(request)
    return Response(render(fmt, root, document), status_code=status, media_type=MEDIA_TYPES[fmt])


def _errors(
    request: Request, status: int, description: str, headers: dict[str, str] | None = None
) -> Response:
    answer = _document(request, "errors", [{"code": status, "description": description}], status)
    answer.headers.update(headers or {})
    return answer


class Open311Route(ProblemRoute):
    """Answers every failure of an Open311 endpoint in the spec's error format, in the format
    the client asked for: its own errors, bad input, intake's refusals as the problems they
    map to (429, 503), and an unavailable database (503 with Retry-After)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except Open311Error as exc:
                return _errors(request, exc.status, exc.description, exc.headers)
            except InvalidRequest as exc:
                return _errors(request, 400, str(exc))
            except RequestValidationError as exc:
                where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
                return _errors(request, 400, f"invalid {where}")
            except Problem as exc:
                return _errors(request, exc.status, exc.detail or exc.title, exc.headers)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                busy = unavailable(retry_after(request))
                return _errors(request, busy.status, BUSY, busy.headers)

        return answer


router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route)


def load_services(runtime: Runtime) -> None:
    """The services, from the validated reference data, and when their catalogue changed."""
    config_dir = runtime.settings.config_dir
    reference = load_reference(config_dir)
    runtime.state["open311_services"] = services_from_catalogue(reference.catalogue.items)
    runtime.state["open311_reference"] = reference
    changed = (config_dir / "catalogue.yaml").stat().st_mtime
    runtime.state["open311_changeset"] = datetime.fromtimestamp(int(changed), UTC)


def _services(runtime: Runtime) -> dict[str, Service]:
    services: dict[str, Service] = runtime.state["open311_services"]
    return services


def _checked_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise Open311Error(404, f"format {fmt!r} is not served; use .xml or .json")
    return fmt  # type: ignore[return-value]


@router.get("/discovery.{fmt}", summary="Service discovery")
async def discovery(fmt: str, request: Request, runtime: RuntimeDep) -> Response:
    _checked_format(fmt)
    changeset = w3c(runtime.state["open311_changeset"])
    document = {
        "changeset": changeset,
        "contact": "县12345政务服务便民热线（拨打 12345）",
        "key_service": "API 密钥由县12345热线管理部门发放",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": str(request.url_for("discovery", fmt=fmt)).rsplit("/", 1)[0],
                "changeset": changeset,
                "type": "production",
                "formats": list(ANNOUNCED_FORMATS),
            }
        ],
    }
    return _document(request, "discovery", document)


@router.get("/services.{fmt}", summary="GET Service List")
async def service_list(fmt: str, request: Request, runtime: RuntimeDep) -> Response:
    _checked_format(fmt)
    document = [
        {
            "service_code": s.code,
            "service_name": s.name,
            "description": s.description,
            "metadata": bool(s.attributes),
            "type": "realtime",
            "keywords": ", ".join(s.keywords),
            "group": s.group,
        }
        for s in _services(runtime).values()
    ]
    return _document(request, "services", document)


@router.get("/services/{service_code}.{fmt}", summary="GET Service Definition")
async def service_definition(
    service_code: str, fmt: str, request: Request, runtime: RuntimeDep
) -> Response:
    _checked_format(fmt)
    service = _services(runtime).get(service_code)
    if service is None:
        raise Open311Error(404, f"service_code {service_code} was not found")
    document = {
        "service_code": service.code,
        "attributes": [
            {
                "variable": True,
                "code": a.code,
                "datatype": a.datatype,
                "required": a.required,
                "datatype_description": a.datatype_description,
                "order": order,
                "description": a.description,
                "values": [{"key": c.key, "name": c.name} for c in a.values] if a.values else None,
            }
            for order, a in enumerate(service.attributes, start=1)
        ],
    }
    return _document(request, "service_definition", document)


async def _form(request: Request) -> list[tuple[str, str]]:
    """The posted fields, as the spec sends them: ``application/x-www-form-urlencoded``, UTF-8."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise Open311Error(400, "send the request as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise Open311Error(413, f"the request is larger than {MAX_FORM_BYTES} bytes")
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise Open311Error(400, "the request is not UTF-8") from None
    except ValueError:
        raise Open311Error(400, f"the request has more than {MAX_FORM_FIELDS} fields") from None


def _key_id(api_key: str, settings: Settings) -> str | None:
    """A short fingerprint of a configured key, or None for an unknown one (compared in
    constant time; the key itself is never stored)."""
    known = any(
        hmac.compare_digest(api_key.encode(), k.encode()) for k in settings.open311_api_keys
    )
    return hashlib.sha256(api_key.encode()).hexdigest()[:12] if known else None


def _text(fields: dict[str, str], name: str, max_length: int) -> str | None:
    value = fields.get(name, "").strip()
    if len(value) > max_length:
        raise InvalidRequest(f"{name} is longer than {max_length} characters")
    return value or None


def _location(fields: dict[str, str]) -> GeoPoint | None:
    lat, lon = fields.get("lat", "").strip(), fields.get("long", "").strip()
    if not lat and not lon:
        return None
    if not lat or not lon:
        raise InvalidRequest("lat and long are sent together")
    try:
        return GeoPoint(lat=float(lat), lon=float(lon))
    except ValueError:
        raise InvalidRequest("lat and long are WGS84 degrees (-90..90, -180..180)") from None


@router.post(
    "/requests.{fmt}",
    status_code=201,
    summary="POST Service Request",
    responses={200: {"description": "a retry with the same Idempotency-Key: the original"}},
)
@own_body_limit
async def create_request(
    fmt: str,
    request: Request,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    _checked_format(fmt)
    pairs = await _form(request)
    fields = dict(reversed(pairs))  # a field given twice: the first one counts
    settings = runtime.settings
    key_id = _key_id(fields.get("api_key", ""), settings) if fields.get("api_key") else None
    if key_id is None:
        raise Open311Error(403, "api_key was not provided or is not valid")
    code = fields.get("service_code", "").strip()
    if not code:
        raise InvalidRequest("service_code was not provided")
    service = _services(runtime).get(code)
    if service is None:
        raise Open311Error(404, f"service_code {code} was not found")
    location = _location(fields)
    address = _text(fields, "address_string", 200)
    grid_id = _text(fields, "address_id", 64)
    if not has_place(location, address, grid_id):
        raise InvalidRequest("give lat and long, address_string or address_id")
    phone = _text(fields, "phone", 20)
    if phone is not None and not PHONE.match(phone):
        raise InvalidRequest("phone is not a phone number")
    name = "".join(
        part for part in (_text(fields, "last_name", 25), _text(fields, "first_name", 25)) if part
    )
    media_url = _text(fields, "media_url", 500)
    if media_url and not media_url.startswith(("https://", "http://")):
        raise InvalidRequest("media_url is an http(s) URL")
    answers = parse_attributes(pairs, service, settings.timezone)
    text = tip_text(
        _text(fields, "description", MAX_TEXT), service, answers, media_url, settings.timezone
    )
    new = NewTip(
        channel=CHANNEL,
        text=text,
        location=location,
        address=address,
        grid_id=grid_id,
        category_hint=category_hint(service, answers),
        contact_name=name or None,
        contact_phone=phone,
        # Scoped to the client's key: two clients' idempotency keys never collide.
        dedupe_key=f"{key_id}:{idempotency_key}" if idempotency_key else None,
        client_key=idempotency_key,
        external_ref=f"api-key:{key_id}",
    )
    await channels.within_tip_limits(runtime, new, client_address(request))
    outcome = Response()
    accepted = answer(await channels.receive(runtime, new), outcome)
    notice = (
        f"您的诉求已受理，受理编号 {accepted.tracking_no}，查询码 {accepted.access_code}。"
        "请妥善保存查询码，凭受理编号和查询码可以查询办理进度。"
    )
    document = [{"service_request_id": accepted.tracking_no, "service_notice": notice}]
    return _document(request, "service_requests", document, outcome.status_code)


def _with_updated() -> Select[tuple[Tip, datetime | None]]:
    """Open311 tips with the moment of their latest status change."""
    updated = (
        select(func.max(TipTimelineEntry.at))
        .where(TipTimelineEntry.tip_id == Tip.id)
        .correlate(Tip)
        .scalar_subquery()
    )
    return select(Tip, updated).where(Tip.channel == CHANNEL)


async def _requests(
    runtime: Runtime, query: Select[tuple[Tip, datetime | None]]
) -> list[dict[str, object]]:
    services = _services(runtime)
    async with database.reading(runtime) as session:
        rows = (await session.execute(query)).all()
    reference: ReferenceData = runtime.state["open311_reference"]
    return [
        request_document(
            tip,
            updated or tip.received_at,
            services,
            STATUS_TEXT.get(tip.status, tip.status),
            _grid_of(tip, reference),
        )
        for tip, updated in rows
    ]


def _grid_of(tip: Tip, reference: ReferenceData) -> tuple[Township, Village, Grid] | None:
    """The grid a tip names, or the one its point lies in (or near)."""
    if tip.grid_id in reference.grids:
        return reference.grids[tip.grid_id]
    if tip.lat is None or tip.lon is None:
        return None
    hit = reference.grid_locator.locate(tip.lat, tip.lon)
    if hit is None or hit.distance_m > NEAR_A_GRID_M:
        return None
    return reference.grids[hit.grid_id]


@router.get("/requests.{fmt}", summary="GET Service Requests")
async def list_requests(fmt: str, request: Request, runtime: RuntimeDep) -> Response:
    _checked_format(fmt)
    params = dict(request.query_params)
    wanted = parse_query(params, _services(runtime), runtime.clock(), runtime.settings.timezone)
    query = _with_updated()
    if wanted.ids is not None:
        query = query.where(Tip.tracking_no.in_(wanted.ids))
    else:
        query = query.where(Tip.received_at >= wanted.start, Tip.received_at <= wanted.end)
        if wanted.hints is not None:
            query = query.where(Tip.category_hint.in_(wanted.hints))
        if wanted.statuses is not None:
            query = query.where(Tip.status.in_(wanted.statuses))
    query = query.order_by(Tip.received_at.desc(), Tip.id.desc()).limit(MAX_RESULTS)
    return _document(request, "service_requests", await _requests(runtime, query))


@router.get("/requests/{service_request_id}.{fmt}", summary="GET Service Request")
async def one_request(
    service_request_id: str, fmt: str, request: Request, runtime: RuntimeDep
) -> Response:
    _checked_format(fmt)
    found = await _requests(runtime, _with_updated().where(Tip.tracking_no == service_request_id))
    if not found:
        raise Open311Error(404, f"service_request_id {service_request_id} was not found")
    return _document(request, "service_requests", found)


@router.get("/tokens/{token}.{fmt}", summary="GET service_request_id from a token")
async def from_token(token: str, fmt: str, request: Request, runtime: RuntimeDep) -> Response:
    """Requests are created in real time, so no answer carries a token; a tip's id still
    answers as one, for clients that keep it."""
    _checked_format(fmt)
    tracking_no = None
    try:
        tip_id = UUID(token)
    except ValueError:
        tip_id = None
    if tip_id is not None:
        async with database.reading(runtime) as session:
            tracking_no = await session.scalar(
                select(Tip.tracking_no).where(Tip.id == tip_id, Tip.channel == CHANNEL)
            )
    if tracking_no is None:
        raise Open311Error(404, f"token {token} was not found")
    document = [{"service_request_id": tracking_no, "token": token}]
    return _document(request, "service_requests", document)
