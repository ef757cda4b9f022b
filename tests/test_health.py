"""Liveness and readiness, with the real search and payment peers up and down."""

from __future__ import annotations

import pytest
from elasticsearch import ApiError

from payments.stripe import StripePayments
from search.elasticsearch import ElasticsearchSearch, make_client
from tests.peers import search_server, stripe_server


async def test_healthz_and_readyz_on_the_defaults(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["search"] == {
        "ok": True,
        "backend": "postgres",
        "detail": "",
        "backlog": {"pending": 0, "parked": 0, "oldest_seconds": None},
    }
    assert checks["payments"]["provider"] == "offline"


async def test_readyz_follows_the_search_cluster(client):
    app = client._transport.app  # type: ignore[attr-defined]
    with search_server() as server:
        engine = ElasticsearchSearch(make_client(server.url, opensearch_compat=True))
        app.state.search = engine
        up = await client.get("/readyz")
        assert up.status_code == 200, up.text
        assert up.json()["checks"]["search"]["backend"] == "elasticsearch"
    # the server is stopped now: searches fail but writes still succeed (the outbox keeps the
    # changes), so the app stays in the load balancer and says it is degraded
    down = await client.get("/readyz")
    assert down.status_code == 200
    assert down.json()["status"] == "degraded"
    assert down.json()["checks"]["search"]["ok"] is False
    assert down.json()["checks"]["database"]["ok"] is True
    await engine.close()


async def test_compat_setting_makes_writes_work_on_opensearch_compatible_servers():
    """Why the setting exists: the client's default versioned media type gets 406 there."""
    with search_server() as server:
        for compat in (False, True):
            client = make_client(server.url, opensearch_compat=compat)
            try:
                if compat:
                    created = await client.index(index="probe", id="1", document={"t": "枸杞"})
                    assert created["result"] == "created"
                else:
                    with pytest.raises(ApiError) as refused:
                        await client.index(index="probe", id="1", document={"t": "枸杞"})
                    assert refused.value.status_code == 406
            finally:
                await client.close()


async def test_readyz_follows_the_payment_provider(client):
    app = client._transport.app  # type: ignore[attr-defined]
    with stripe_server() as url:
        app.state.payments = {
            **app.state.payments,
            "stripe": StripePayments("sk_test_agribridge", api_base=url),
        }
        up = await client.get("/readyz")
        assert up.status_code == 200, up.text
        assert up.json()["status"] == "ready"
        assert up.json()["checks"]["payments"]["provider"] == "offline, stripe"
    # Stripe away: bank transfers go on, so the app stays in the load balancer, degraded
    down = await client.get("/readyz")
    assert down.status_code == 200
    assert down.json()["status"] == "degraded"
    assert down.json()["checks"]["payments"]["ok"] is False


async def test_metrics_show_the_search_backlog(client, session):
    from sqlalchemy import text

    await session.execute(
        text(
            "INSERT INTO search_outbox (listing_id) VALUES (gen_random_uuid()), (gen_random_uuid())"
        )
    )
    await session.execute(
        text("INSERT INTO search_outbox (listing_id, parked_at) VALUES (gen_random_uuid(), now())")
    )
    await session.flush()
    body = (await client.get("/metrics")).text
    assert "agribridge_search_outbox_pending 2\n" in body
    assert "agribridge_search_outbox_parked 1\n" in body
    ready = (await client.get("/readyz")).json()["checks"]["search"]["backlog"]
    assert ready["pending"] == 2 and ready["parked"] == 1 and ready["oldest_seconds"] >= 0
