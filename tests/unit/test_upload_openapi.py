"""The two evidence upload routes (dispatch's for a case, escalation's for a whistle) describe
their refusals from one place, beside the upload helper (services/runtime/uploads.py)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from services.dispatch.evidence_api import router as case_evidence
from services.escalation.whistle_api import router as whistle_evidence
from services.runtime.uploads import EVIDENCE_REFUSALS


def _upload_responses(router: APIRouter, path: str) -> dict[str, dict[str, str]]:
    app = FastAPI()
    app.include_router(router)
    responses: dict[str, dict[str, str]] = app.openapi()["paths"][path]["post"]["responses"]
    return responses


def test_both_evidence_uploads_declare_the_same_refusals() -> None:
    for router, path in (
        (case_evidence, "/v1/cases/{case_id}/evidence"),
        (whistle_evidence, "/v1/whistles/{whistle_id}/evidence"),
    ):
        responses = _upload_responses(router, path)
        for status, described in EVIDENCE_REFUSALS.items():
            assert responses[str(status)]["description"] == described["description"], path
