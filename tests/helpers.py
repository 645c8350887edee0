"""Assertions several test modules share."""

from __future__ import annotations

import httpx


def problem(response: httpx.Response, status: int, kind: str) -> dict:
    """Assert an NGSI-LD ProblemDetails answer of this status and error type; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}"
    assert body["title"] and body["detail"] and body["title"] != body["detail"]
    return body
