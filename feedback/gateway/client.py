"""Clients of the feedback gateway, over HTTP/JSON or gRPC, with one interface.

`connect(url, ...)` picks the transport from the URL: `http(s)://host:port` speaks the JSON
API, `grpc(s)://host:port` or bare `host:port` speaks gRPC. Every call has a deadline and
retries transient failures; the gateway's own errors come back as the matching rewardloop
error (401 -> Unauthenticated, 404 -> NotFound, 400 -> InvalidInput, 413 -> PayloadTooLarge).
Used by the human reward source, by tests, and by anyone who wants to feed ratings in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from urllib.parse import urlencode

from rewardloop.errors import InvalidInput, NotFound, PayloadTooLarge, Unauthenticated
from rewardloop.feedback.sources.remote import item_json
from rewardloop.feedback.sources.transport import (
    HttpStatusError,
    JsonClient,
    call_grpc,
    grpc_metadata,
    open_channel,
)
from rewardloop.pb import feedback_pb2, feedback_pb2_grpc
from rewardloop.scoring import ScoreRequest

from .records import Item, Outcome, SubmitResult

HTTP_ERRORS = {
    401: Unauthenticated,
    404: NotFound,
    400: lambda m: InvalidInput("request", m),
    413: lambda m: PayloadTooLarge("request", m),
}


class GatewayClient(ABC):
    """Publish items, list pending ones, submit ratings, collect outcomes."""

    @abstractmethod
    def publish(self, items: list[ScoreRequest], publisher: str) -> list[str]:
        """Publish items for feedback; returns the ids the content check blocked."""

    @abstractmethod
    def pending(self, limit: int = 20, rater: str = "") -> list[Item]: ...

    @abstractmethod
    def submit(
        self, item_id: str, value: float = 0.0, rater: str = "", key: str = "", stars: int = 0
    ) -> SubmitResult: ...

    @abstractmethod
    def collect(
        self, publisher: str, ack_ids: list[str], limit: int = 0, retries: int | None = None
    ) -> list[Outcome]:
        """Ack the previous outcomes and fetch this publisher's new ones."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""


class HttpGatewayClient(GatewayClient):
    def __init__(self, url: str, **knobs):
        """`knobs`: JsonClient's (headers, timeout_s, retries, max_concurrency, ca_cert)."""
        self.json = JsonClient(url, **knobs, what="feedback gateway")

    def _call(self, method: str, path: str, payload=None, retries: int | None = None):
        try:
            return self.json.request(method, path, payload, retries=retries)
        except HttpStatusError as exc:
            if exc.status in HTTP_ERRORS:
                raise HTTP_ERRORS[exc.status](exc.message) from None
            raise

    def publish(self, items, publisher):
        payload = {"publisher": publisher, "items": [item_json(i) for i in items]}
        return list(self._call("POST", "/v1/publish", payload)["blocked_ids"])

    def pending(self, limit=20, rater=""):
        query = "/v1/pending?" + urlencode(
            {"limit": int(limit), **({"rater": rater} if rater else {})}
        )
        return [Item(**d) for d in self._call("GET", query)["items"]]

    def submit(self, item_id, value=0.0, rater="", key="", stars=0):
        body = {
            "item_id": item_id,
            "value": value,
            "rater": rater,
            "idempotency_key": key,
            "stars": stars,
        }
        d = self._call("POST", "/v1/ratings", body)
        return SubmitResult(bool(d["stored"]), bool(d["duplicate"]), str(d.get("reason", "")))

    def collect(self, publisher, ack_ids, limit=0, retries=None):
        body = {"publisher": publisher, "ack_ids": list(ack_ids), "limit": limit}
        return [
            Outcome.from_json(o)
            for o in self._call("POST", "/v1/collect", body, retries)["outcomes"]
        ]

    def stats(self) -> dict:
        return self._call("GET", "/v1/stats")

    def close(self):
        self.json.close()


class GrpcGatewayClient(GatewayClient):
    def __init__(
        self,
        url: str,
        *,
        headers=None,
        timeout_s=10.0,
        retries=3,
        ca_cert="",
        max_message_bytes=64 << 20,
    ):
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.metadata = grpc_metadata(headers or {})
        self.channel = open_channel(url, ca_cert, max_message_bytes)
        self.stub = feedback_pb2_grpc.FeedbackServiceStub(self.channel)

    def _call(self, method, request, retries: int | None = None):
        return call_grpc(
            method,
            request,
            timeout_s=self.timeout_s,
            retries=self.retries if retries is None else retries,
            metadata=self.metadata,
            what=f"feedback gateway {self.url}",
            map_errors=True,
        )

    def publish(self, items, publisher):
        req = feedback_pb2.PublishRequest(
            publisher=publisher,
            items=[
                feedback_pb2.FeedbackItem(
                    id=i.id, prompt=i.prompt, completion=i.completion, metadata=i.metadata
                )
                for i in items
            ],
        )
        return list(self._call(self.stub.Publish, req).blocked_ids)

    def pending(self, limit=20, rater=""):
        res = self._call(
            self.stub.ListPending, feedback_pb2.ListPendingRequest(limit=limit, rater=rater)
        )
        return [
            Item(i.id, i.prompt, i.completion, dict(i.metadata), i.created_at, i.expires_at)
            for i in res.items
        ]

    def submit(self, item_id, value=0.0, rater="", key="", stars=0):
        req = feedback_pb2.SubmitRatingRequest(
            item_id=item_id, value=value, rater=rater, idempotency_key=key, stars=stars
        )
        res = self._call(self.stub.SubmitRating, req)
        return SubmitResult(res.stored, res.duplicate)

    def collect(self, publisher, ack_ids, limit=0, retries=None):
        req = feedback_pb2.CollectRequest(publisher=publisher, ack_ids=list(ack_ids), limit=limit)
        res = self._call(self.stub.Collect, req, retries)
        return [
            Outcome(o.item_id, o.kind, o.reward, o.drop, o.rater, o.latency_s, o.reason)
            for o in res.outcomes
        ]

    def close(self):
        self.channel.close()


def connect(
    url: str, *, headers=None, timeout_s=10.0, retries=3, max_concurrency=4, ca_cert=""
) -> GatewayClient:
    """A gateway client for `url`: http(s):// -> JSON API, else gRPC (`max_concurrency`: HTTP's)."""
    knobs = {"headers": headers, "timeout_s": timeout_s, "retries": retries, "ca_cert": ca_cert}
    if url.startswith(("http://", "https://")):
        return HttpGatewayClient(url, **knobs, max_concurrency=max_concurrency)
    return GrpcGatewayClient(url, **knobs)
