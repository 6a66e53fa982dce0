"""Errors in OpenAI's shape, so OpenAI clients raise their usual exceptions with our message.

Every error reply, whatever its cause, has the body

    {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}

Anything the client can cause is a 4xx: FastAPI's own validation errors (422 by default) are
turned into 400, and `SokhanError`, the library's user-facing error, also becomes a 400. A 500
means a bug in the server, never bad input. A client that hangs up in the middle of its body is
one line in the log (it may be one of hundreds), not a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sokhan.errors import SokhanError
from sokhan.infer.chat import ContextExceeded

log = logging.getLogger("sokhan.serve")


class APIError(Exception):
    """An error reply: raise it anywhere in a handler."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(error_body(err.message, err.type, err.param, err.code), status_code=err.status,
                        headers=err.headers)


def from_validation(exc: ValidationError | RequestValidationError) -> APIError:
    """The first problem pydantic found, as one line naming the field (`messages.0.role`)."""
    errors = exc.errors()
    if not errors:
        return APIError(400, "invalid request body")
    # For a union (`stop`: a string or a list) pydantic reports each member; a member whose type
    # matched but whose value did not ("at most 4 items") says more than "should be a string".
    first = next((e for e in errors if not str(e.get("type", "")).endswith("_type")), errors[0])
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    # pydantic names the union member it tried in the location ("str", "list[...]"): drop those
    loc = [part for part in loc if not part.startswith(("list[", "function-")) and part not in ("str", "int")]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('msg', '')}", None, "invalid_json")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}" if param else message, param, first.get("type"))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation(exc))

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(from_validation(exc))

    @app.exception_handler(SokhanError)
    async def _sokhan(request: Request, exc: SokhanError) -> JSONResponse:
        if isinstance(exc, ContextExceeded):  # OpenAI's code for it, so clients can trim and retry
            return error_response(APIError(400, str(exc), "messages", "context_length_exceeded"))
        return error_response(APIError(400, str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(APIError(exc.status_code, str(exc.detail), code=code, headers=exc.headers))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning("%s left while sending the body of %s %s", client, request.method, request.url.path)
        return Response(status_code=499)  # nobody reads it: nginx's code for "the client closed the request"

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal server error: {type(exc).__name__}", type="server_error"))
