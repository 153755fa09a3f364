"""The ``bare`` anchor: the least a FastAPI app can do for ``POST /events``.

It reads the body and answers ``202 {"status": "queued"}`` without parsing, authenticating
or storing anything, so ``nethook / bare`` is the fraction of the framework's ceiling that
nethook keeps.  Run it exactly like nethook is run::

    uvicorn bench.bare_app:app --host 127.0.0.1 --port 8000 --no-access-log --log-level warning
"""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/events", status_code=202)
async def events(request: Request) -> dict[str, str]:
    await request.body()
    return {"status": "queued"}
