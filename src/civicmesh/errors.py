"""RFC 7807 ProblemDetails with the NGSI-LD error types; every room raises `Problem`."""

from __future__ import annotations

from typing import Any

NGSI_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"

# NGSI-LD error type -> (HTTP status, title)
ERROR_TYPES: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "The request is not well formed"),
    "BadRequestData": (400, "The request includes input data which does not meet the requirements"),
    "AlreadyExists": (409, "The referred element already exists"),
    "OperationNotSupported": (422, "The operation is not supported"),
    "ResourceNotFound": (404, "The referred resource has not been found"),
    "InternalError": (500, "There has been an error during the operation execution"),
    "TooComplexQuery": (403, "The query is too complex to be answered"),
    "TooManyResults": (403, "The query result is too large"),
    "LdContextNotAvailable": (503, "A remote JSON-LD @context could not be retrieved"),
    "NoMultiTenantSupport": (501, "Multi-tenancy is not supported"),
    "NonexistentTenant": (404, "The addressed tenant does not exist"),
    "UnsupportedMediaType": (415, "The content type of the request is not supported"),
    "NotAcceptable": (406, "None of the accepted media types can be produced"),
    "PayloadTooLarge": (413, "The request body is larger than the configured limit"),
    "MethodNotAllowed": (405, "The method is not allowed on this resource"),
    "Unauthorized": (401, "Authentication is required"),
    "Forbidden": (403, "The caller may not do this"),
    "Conflict": (409, "The request conflicts with the current state"),
}


class Problem(Exception):
    """An error answered as `application/problem+json`. `detail` must say precisely what is wrong."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None, title: str | None = None,
                 extra: dict[str, Any] | None = None, type_uri: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        default_status, default_title = ERROR_TYPES.get(kind, (400, kind))
        self.kind = kind
        self.status = status or default_status
        self.title = title or default_title
        self.detail = detail if detail != self.title else detail + "."
        self.type_uri = type_uri or NGSI_ERRORS + kind
        self.extra = extra or {}
        # Response headers the answer must carry (WWW-Authenticate on a 401, RFC 9110 section 11.6.1).
        self.headers = headers or {}
        super().__init__(f"{kind}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type_uri, "title": self.title, "status": self.status, "detail": self.detail}
        body.update(self.extra)
        return body
