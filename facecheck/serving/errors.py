"""One error format for every refusal and failure: ``{"error": code, "message": words}``.

FastAPI's own answers (validation errors, 404, 405, unhandled exceptions)
come back in the same shape as the service's refusals, so a client reads
every error the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

# Codes for the statuses that FastAPI or Starlette raise on their own.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_type",
    422: "bad_request",
    500: "internal_error",
    503: "busy",
    504: "timeout",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, count: Callable[[str], None]) -> None:
    """Render every error as ``{"error", "message"}``; ``count(code)`` is called once per error."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        count(exc.code)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        count("bad_request")
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in exc.errors()})
        message = f"invalid or missing field(s): {', '.join(fields)}; send multipart/form-data with the image as 'file'"
        return error_response(422, "bad_request", message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        count(code)
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        count("internal_error")
        return error_response(500, "internal_error", "the server failed on this request; it has been logged")
