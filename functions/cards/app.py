"""Merchant card API: card setup sessions, an account's saved cards, removing one. Thin: parse,
call one use case, answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.cards.model import CardSetup, is_setup_id
from payments.cards.requests import (
    encode_cursor,
    is_account_id,
    is_card_id,
    parse_list_query,
    parse_setup_request,
)
from payments.cards.views import card_resource, setup_resource
from payments.errors import ValidationError
from payments.http import router
from payments.http.router import Reply, Request
from payments.observability import logger, metrics
from payments.shared import deadline
from payments.shared.fields import validate_idempotency_key

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = router.Router(
    path_ids={"setupId": is_setup_id, "accountId": is_account_id, "cardId": is_card_id}
)


def _setup(setup: CardSetup) -> dict[str, Any]:
    return setup_resource(setup, bootstrap.card_setups().page_url(setup))


@app.route("POST", "/card-setups")
def create_setup(request: Request, _context: router.Context) -> Reply:
    """Start a card setup once per Idempotency-Key; the answer's `url` is the customer's page."""
    key = validate_idempotency_key(request.header("Idempotency-Key"))
    setup_request = parse_setup_request(request.json_body())
    result = bootstrap.card_setups().create(setup_request, key)
    resource = _setup(result.setup)
    if result.replayed:
        return router.json_response(200, resource, **{"Idempotent-Replayed": "true"})
    return router.json_response(201, resource, Location=f"/card-setups/{result.setup.id}")


@app.route("GET", "/card-setups/{setupId}")
def get_setup(request: Request, _context: router.Context) -> Reply:
    """Read a card setup."""
    setup = bootstrap.card_setups().get(request.path_params["setupId"])
    return router.json_response(200, _setup(setup))


@app.route("GET", "/accounts/{accountId}/cards")
def list_cards(request: Request, context: router.Context) -> Reply:
    """An account's saved cards, newest first (`?refresh=true` compares with ePay's list)."""
    account_id = request.path_params["accountId"]
    query = parse_list_query(dict(request.query), account_id)
    cards, position = bootstrap.card_service().list_cards(
        account_id, query, deadline.deadline_from(context)
    )
    return router.json_response(
        200,
        {
            "data": [card_resource(card) for card in cards],
            "nextCursor": encode_cursor(position) if position else None,
        },
    )


@app.route("DELETE", "/accounts/{accountId}/cards/{cardId}")
def remove_card(request: Request, context: router.Context) -> Reply:
    """Deactivate a card at ePay and mark it REMOVED; a removed card is answered as it is."""
    if request.json_body(required=False) not in (None, {}):
        raise ValidationError("a card removal takes no body")
    card = bootstrap.card_service().remove(
        request.path_params["accountId"],
        request.path_params["cardId"],
        deadline.deadline_from(context),
    )
    return router.json_response(200, card_resource(card))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway (REST, proxy) entry point."""
    return app.resolve(event, context)
