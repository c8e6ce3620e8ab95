"""Fuzzing every operation of the four services' OpenAPI documents (issue #13, item 12).

Each service runs in process with its lifespan, on a PostgreSQL server and a Tansu broker of
this module's own (what the fuzzer stores never meets another module's data). Its OpenAPI
document is read from the running app (``GET /openapi.json``) and loaded by schemathesis, which
generates requests for every operation: valid ones (positive) and ones that break the schema
(negative), sent without credentials and — for a staff operation — with a token of a role
allowed to call it (the table in tests/integration/test_route_authorization.py), every scope.

Every answer must be below 500, and every error (4xx) an RFC 9457 problem document
(``application/problem+json``, a JSON object whose ``status`` is the answer's), except where
``NOT_PROBLEM_JSON`` says why not. Routes left out of the OpenAPI documents (the pages, their
scripts and styles, ``/metrics``, ``/v1/kpis/metrics``) are not generated at all.

Three kinds of request per operation: schemathesis' coverage cases (deterministic: each value
at its bounds and past them, a required part missing, a wrong type, the methods the path does
not take), then hypothesis' positive and negative examples, derandomized (the same requests on
every run, for the same selection of tests) and few: the module takes about 70 s on an idle
2-core machine, its own servers' start included. A failure names the operation and the request
that broke the rule (hypothesis shrinks it first); every operation is tried before the test
fails, so one run lists every failing operation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import HypothesisException
from schemathesis import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from services.dispatch.app import create_app as create_dispatch
from services.escalation.app import create_app as create_escalation
from services.intake.app import create_app as create_intake
from services.ledger.app import create_app as create_ledger
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import _in_process
from tests.integration.test_route_authorization import EVERY_SCOPE, STAFF
from tests.support.infra import Infra, embedded_servers, prepared_on

FACTORIES = {
    "intake": create_intake,
    "dispatch": create_dispatch,
    "escalation": create_escalation,
    "ledger": create_ledger,
}
PROBLEM_JSON = "application/problem+json"

# Operations whose errors are not problem documents, by design; each is still held to "no
# answer of 500 or more". (service, path pattern) → why. (WeChat's callback answers its
# successes in plain text and XML, but its refusals are problems, so it is not listed.)
NOT_PROBLEM_JSON: dict[tuple[str, str], str] = {
    # Open311 GeoReport v2 answers errors in the spec's own error document: <errors><error>
    # in XML, or a JSON array of {code, description} (services/intake/open311.py); clients of
    # the spec read nothing else.
    ("intake", r"/open311/v2/.*"): "Open311 GeoReport v2 error documents",
}

# Per operation, caller and generation mode; WHISTLE_FUZZ_EXAMPLES=200 looks further (minutes).
# A staff operation called without a token is refused (401) before anything is read, so a few
# examples say all there is to say.
EXAMPLES = int(os.environ.get("WHISTLE_FUZZ_EXAMPLES", "12"))
# CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not per thread
# (python/cpython issue 106905): hypothesis parsing source in its worker thread while the app's
# thread compiles code may raise a SystemError with this text, which says nothing of the
# service. Examples that fail with it alone are run once more.
CPYTHON_AST_RACE = "AST constructor recursion depth mismatch"
REFUSED = 3

FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    # Generating from a schema is slow by hypothesis' measure, and a negative case may be
    # filtered often; neither says anything about the service.
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    print_blob=False,
)


@pytest.fixture(scope="module")
def fuzz_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("fuzz-servers")) as servers:
        yield servers


@pytest.fixture(scope="module")
async def clients(
    settings: Settings, fuzz_servers: Infra
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Each service with its lifespan running, called in process."""
    own = await prepared_on(fuzz_servers, settings, tuple(FACTORIES))
    async with AsyncExitStack() as stack:
        running = {}
        for name, factory in FACTORIES.items():
            app: FastAPI = factory(own)
            client, _ = await stack.enter_async_context(asynccontextmanager(_in_process)(app))
            running[name] = client
        yield running


def _problem_expected(service: str, path: str) -> bool:
    return not any(
        service == excluded and re.fullmatch(pattern, path)
        for excluded, pattern in NOT_PROBLEM_JSON
    )


def _broken_rule(response: httpx.Response, problem_expected: bool) -> str | None:
    """What is wrong with an answer, or None."""
    status = response.status_code
    if status >= 500:
        return f"answered {status}: {response.text[:500]}"
    if status < 400 or not problem_expected:
        return None
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(PROBLEM_JSON):
        return f"answered {status} as {content_type!r}, not {PROBLEM_JSON}: {response.text[:300]}"
    try:
        document = json.loads(response.content)
    except ValueError:
        return f"answered {status} with a problem that is not JSON: {response.text[:300]}"
    if not isinstance(document, dict) or document.get("status", status) != status:
        return f"answered {status} with a malformed problem: {response.text[:300]}"
    return None


def _request(case: Case, headers: dict[str, str]) -> requests.PreparedRequest:
    """The case as bytes on the wire: schemathesis serializes it for ``requests``."""
    kwargs = case.as_transport_kwargs(base_url="http://test", headers=headers)
    wanted = ("method", "url", "headers", "params", "cookies", "json", "data", "files")
    return requests.Request(**{key: kwargs[key] for key in wanted if key in kwargs}).prepare()


async def _check(
    client: httpx.AsyncClient, case: Case, headers: dict[str, str], problem: bool
) -> None:
    """Send one case; AssertionError naming the request if its answer breaks a rule."""
    prepared = _request(case, headers)
    request = f"{prepared.method} {prepared.url} {prepared.body!r}"
    try:
        response = await client.request(
            prepared.method or "GET",
            prepared.url or "/",
            headers=dict(prepared.headers),
            content=prepared.body,
        )
    except Exception as exc:  # what the app raised is an answer of 500
        raise AssertionError(f"{request}: raised {exc!r}") from exc
    broken = _broken_rule(response, problem)
    assert broken is None, f"{request}: {broken}"


def _fuzz(
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
    operation: APIOperation,
    headers: dict[str, str],
    problem: bool,
    mode: GenerationMode,
    examples: int,
) -> None:
    """Hypothesis runs the examples in a worker thread; each request is sent on the event loop
    the app runs on."""

    @hypothesis_settings(FUZZ, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case) -> None:
        sent = _check(client, case, headers, problem)
        asyncio.run_coroutine_threadsafe(sent, loop).result(timeout=60)

    try:
        check()
    except (AssertionError, ExceptionGroup, HypothesisException) as failure:
        if CPYTHON_AST_RACE not in _described(failure):
            raise
        check()  # the interpreter's fault, not the service's: the same examples once more


def _coverage_cases(operation: APIOperation, breakable: bool) -> list[Case]:
    """Schemathesis' coverage phase: deterministic cases at the schema's edges — each value at
    its bounds and just past them, a required part missing, a wrong type, and the methods the
    path does not take."""
    schema = operation.schema
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if breakable else [])
    config = schema.config.generation_for(operation=operation)
    return list(
        schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config)
    )


def _breakable(spec: dict[str, Any]) -> bool:
    """Whether a request can break an operation's schema: it takes a body, a query, header or
    cookie parameter, or a path parameter that is more than any string (a number, a UUID). A
    bare string in the path takes whatever is sent, so there is no negative case to make."""
    if "requestBody" in spec:
        return True
    for parameter in spec.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter["in"] != "path" or schema.get("type") != "string":
            return True
        if set(schema) - {"type", "title", "description"}:
            return True
    return False


def _described(failure: BaseException) -> str:
    """A failure and, for a group (several bugs, or a flaky one), each of its exceptions."""
    if isinstance(failure, BaseExceptionGroup):
        return "; ".join([str(failure), *(_described(e) for e in failure.exceptions)])
    return str(failure)


def _operations(document: dict[str, Any]) -> Iterator[APIOperation]:
    schema = schemathesis.openapi.from_dict(document)
    for result in schema.get_all_operations():
        yield result.ok()


# schemathesis' strategies draw from `random` inside hypothesis (derandomized all the same).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("service", list(FACTORIES))
async def test_no_operation_answers_5xx_or_an_error_that_is_not_a_problem(
    clients: dict[str, httpx.AsyncClient], token: TokenFactory, service: str
) -> None:
    client = clients[service]
    document = (await client.get("/openapi.json")).json()
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    operations = list(_operations(document))
    assert operations, f"{service} documents no operation"
    for operation in operations:
        spec = document["paths"][operation.path][operation.method.lower()]
        breakable = _breakable(spec)
        problem = _problem_expected(service, operation.path)
        allowed = STAFF.get((service, operation.method.upper(), operation.path))
        # Who calls it with every case: anyone for a public operation, an allowed role for a
        # staff one (which refuses anyone else before reading the request).
        caller, headers = "anonymous", {}
        if allowed is not None:
            caller = sorted(allowed)[0]
            headers = {"authorization": f"Bearer {token(caller, *EVERY_SCOPE)}"}
            try:
                await asyncio.to_thread(
                    _fuzz, loop, client, operation, {}, problem, GenerationMode.POSITIVE, REFUSED
                )
            except (AssertionError, ExceptionGroup, HypothesisException) as failure:
                failures.append(f"{operation.label} without a token: {_described(failure)}")
        for case in _coverage_cases(operation, breakable):
            try:
                await _check(client, case, headers, problem)
            except AssertionError as failure:
                failures.append(f"{operation.label} as {caller}, coverage: {failure}")
                break  # the first is enough; fuzzing looks further
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if breakable else [])
        for mode in modes:
            try:
                await asyncio.to_thread(
                    _fuzz, loop, client, operation, headers, problem, mode, EXAMPLES
                )
            except (AssertionError, ExceptionGroup, HypothesisException) as failure:
                failures.append(
                    f"{operation.label} as {caller}, {mode.value}: {_described(failure)}"
                )
    assert not failures, "\n\n".join(failures)
