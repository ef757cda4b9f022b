"""Domain errors and their rendering as RFC 9457 problem+json."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from market.observability import current_request_id

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://agribridge.example/problems/"

log = logging.getLogger("market.errors")


class StartupError(Exception):
    """Configuration or environment problem: printed as one line, then exit non-zero."""


class MarketError(Exception):
    """A failure the caller can understand; services raise these, never HTTPException."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.errors = errors
        self.headers = headers
        # extra members of the problem document, e.g. current_status for a refused transition
        self.extensions = extensions


class NotFound(MarketError):
    status = 404
    code = "not_found"
    title = "Not found"


class Unauthorized(MarketError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(MarketError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class Conflict(MarketError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Invalid(MarketError):
    """Well-formed input that breaks a business rule; name the field in `errors`."""

    status = 422
    code = "invalid"
    title = "Invalid input"

    @classmethod
    def field(cls, field: str, message: str, *, code: str = "invalid") -> Invalid:
        return cls(message, code=code, errors=[{"field": field, "message": message}])


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = err.get("loc", ())
        kind = err.get("type", "invalid")
        message = err.get("msg", "invalid value")
        if kind == "extra_forbidden":
            message = "unknown field: this field is not accepted here"
        elif kind == "missing":
            message = "this field is required"
        out.append(
            {
                "field": _field_name(loc),
                "in": str(loc[0]) if loc else "body",
                "message": message,
                "type": kind,
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MarketError)
    async def _market_error(request: Request, exc: MarketError) -> JSONResponse:
        return problem(
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            errors=exc.errors,
            headers=exc.headers,
            instance=request.url.path,
            extensions=exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        return problem(
            422,
            "validation_failed",
            "Invalid input",
            f"Some fields are not valid: {fields}",
            errors=errors,
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        code = title.lower().replace(" ", "_").replace("-", "_")
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"There is nothing at {request.url.path}."
        return problem(
            exc.status_code,
            code,
            title,
            detail,
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        if not _unique_violation(exc):
            return await _unexpected(request, exc)
        # two requests created the same thing at the same moment (an account, a member): the
        # database kept one; the other is told so rather than given a 500
        log.warning("unique violation on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(
            409,
            "conflict",
            "Conflict",
            "Another request created the same thing at the same moment; reload and check "
            "before trying again.",
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal_error",
            "Internal error",
            "Something went wrong on our side; the request id identifies it in our logs.",
            instance=request.url.path,
        )


def _unique_violation(exc: BaseException) -> bool:
    """Whether `exc` is (or wraps) PostgreSQL's unique_violation (SQLSTATE 23505)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (
            getattr(current, "sqlstate", None) == "23505"
            or getattr(current, "pgcode", None) == "23505"
        ):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False
