"""The pipeline benchmark's ceiling (a): what "accepted durably" costs with nothing of Whistle
in it — a FastAPI endpoint under uvicorn as the services run, that commits one row per request
to the same PostgreSQL through the same engine settings and answers 201.

    python -m bench.ceiling_app PORT DATABASE_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from uuid import uuid4

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text

from services.launcher.cli import UVICORN_OPTIONS
from services.runtime.db import create_engine
from services.runtime.service import NO_OPENTELEMETRY

CREATE = """CREATE TABLE IF NOT EXISTS ceiling_tip (
    id uuid PRIMARY KEY, text text NOT NULL, grid_id text NOT NULL,
    received_at timestamptz NOT NULL)"""
INSERT = text(
    "INSERT INTO ceiling_tip (id, text, grid_id, received_at) VALUES (:id, :text, :grid, :at)"
)


class TipBody(BaseModel):
    text: str
    grid_id: str


def create_app(database_url: str) -> FastAPI:
    engine = create_engine(database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.execute(text(CREATE))
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, telemetry=NO_OPENTELEMETRY)

    @app.post("/v1/tips", status_code=201)
    async def accept(body: TipBody) -> dict[str, str]:
        tip = uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                INSERT,
                {"id": tip, "text": body.text, "grid": body.grid_id, "at": datetime.now(UTC)},
            )
        return {"tracking_no": str(tip)}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    port, database_url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(create_app(database_url), host="127.0.0.1", port=port, **UVICORN_OPTIONS)
