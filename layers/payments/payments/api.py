"""The REST resolver every API function starts from: JSON answers and one error mapping."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from payments import web
from payments.errors import PaymentsError
from payments.observability import logger


def json_response(status: int, body: dict[str, Any], **headers: str) -> Response[str]:
    """A JSON answer with exact money and `Cache-Control: no-store`."""
    return Response(status, body=web.dumps(body), headers={**web.JSON_HEADERS, **headers})


def new_resolver() -> APIGatewayRestResolver:
    """A resolver whose errors become their HTTP status and a JSON body with a stable code."""
    app = APIGatewayRestResolver()

    # Powertools' exception_handler decorator is untyped; the handlers below are fully typed.
    @app.exception_handler(PaymentsError)  # type: ignore[untyped-decorator]
    def payments_error(error: PaymentsError) -> Response[str]:
        if error.http_status >= 500:
            logger.warning(
                "request failed", extra={"code": error.code, "error": type(error).__name__}
            )
        return json_response(error.http_status, web.error_body(error))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected_error(error: Exception) -> Response[str]:
        # A bug: logged with its traceback; the answer is a bare 500 and no state was changed.
        logger.exception("unexpected error", extra={"error": type(error).__name__})
        return json_response(500, web.error_body(PaymentsError("internal error")))

    return app
