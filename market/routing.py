"""The route class of every router: stores idempotent responses before the commit."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from market.idempotency import service as idempotency_service


class MarketRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except idempotency_service.Replay as replay:
                stored = replay.stored
                return Response(
                    content=stored.body,
                    status_code=stored.status_code,
                    media_type=stored.media_type,
                    headers={"Idempotent-Replayed": "true"},
                )
            claim = getattr(request.state, "idempotency_claim", None)
            if claim is not None and response.status_code < 500:
                # the session is still open here: the function-scoped dependencies
                # (and so the commit) close after this handler returns
                await idempotency_service.complete(
                    claim,
                    status_code=response.status_code,
                    body=bytes(response.body),
                    media_type=response.media_type or "application/json",
                )
            return response

        return route_handler
