"""Search on an Elasticsearch 8/9 cluster (or an OpenSearch-compatible server)."""

from __future__ import annotations

from typing import Any

from elastic_transport import AiohttpHttpNode
from elasticsearch import AsyncElasticsearch

from search.base import Health

# the versioned media types the official client sends, and the plain ones to send instead
_PLAIN = {
    "application/vnd.elasticsearch+json": "application/json",
    "application/vnd.elasticsearch+x-ndjson": "application/x-ndjson",
}


class PlainJsonNode(AiohttpHttpNode):
    """Sends plain application/json (and x-ndjson for bulk) instead of the versioned media
    types that the official client sends by default, which OpenSearch-compatible servers and
    an Elasticsearch older than the client refuse (406)."""

    async def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: Any = None,
        request_timeout: Any = None,
    ) -> Any:
        if headers:
            headers = headers.copy()
            for key in list(headers.keys()):
                if key.lower() in ("accept", "content-type"):
                    for versioned, plain in _PLAIN.items():
                        if str(headers[key]).startswith(versioned):
                            headers[key] = plain
        return await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )


def make_client(
    url: str, *, api_key: str | None = None, opensearch_compat: bool = False
) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {"request_timeout": 10, "retry_on_timeout": True, "max_retries": 2}
    if api_key:
        kwargs["api_key"] = api_key
    if opensearch_compat:
        kwargs["node_class"] = PlainJsonNode
    return AsyncElasticsearch(url, **kwargs)


class ElasticsearchSearch:
    name = "elasticsearch"

    def __init__(self, client: AsyncElasticsearch, *, index_prefix: str = "agribridge") -> None:
        self.client = client
        self.index_prefix = index_prefix

    async def health(self) -> Health:
        try:
            info = await self.client.options(request_timeout=3).cluster.health()
        except Exception as exc:
            return Health(ok=False, backend=self.name, detail=f"cluster unreachable: {exc}")
        status = str(info.get("status", "unknown"))
        return Health(ok=status in ("green", "yellow"), backend=self.name, detail=status)

    async def close(self) -> None:
        await self.client.close()
