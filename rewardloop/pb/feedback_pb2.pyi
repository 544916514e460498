from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackItem(_message.Message):
    __slots__ = ("id", "prompt", "completion", "metadata", "created_at", "expires_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt: str
    completion: str
    metadata: _containers.ScalarMap[str, str]
    created_at: float
    expires_at: float
    def __init__(self, id: _Optional[str] = ..., prompt: _Optional[str] = ..., completion: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("items", "publisher")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FeedbackItem]
    publisher: str
    def __init__(self, items: _Optional[_Iterable[_Union[FeedbackItem, _Mapping]]] = ..., publisher: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("published", "blocked", "blocked_ids")
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_IDS_FIELD_NUMBER: _ClassVar[int]
    published: int
    blocked: int
    blocked_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, published: _Optional[int] = ..., blocked: _Optional[int] = ..., blocked_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("limit", "rater")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    rater: str
    def __init__(self, limit: _Optional[int] = ..., rater: _Optional[str] = ...) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FeedbackItem]
    def __init__(self, items: _Optional[_Iterable[_Union[FeedbackItem, _Mapping]]] = ...) -> None: ...

class SubmitRatingRequest(_message.Message):
    __slots__ = ("item_id", "value", "rater", "idempotency_key", "stars")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RATER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STARS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    value: float
    rater: str
    idempotency_key: str
    stars: int
    def __init__(self, item_id: _Optional[str] = ..., value: _Optional[float] = ..., rater: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., stars: _Optional[int] = ...) -> None: ...

class SubmitRatingResponse(_message.Message):
    __slots__ = ("stored", "duplicate")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    duplicate: bool
    def __init__(self, stored: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ScoreItem(_message.Message):
    __slots__ = ("id", "prompt", "completion", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt: str
    completion: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., prompt: _Optional[str] = ..., completion: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("rewards",)
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, rewards: _Optional[_Iterable[float]] = ...) -> None: ...

class CollectRequest(_message.Message):
    __slots__ = ("publisher", "ack_ids", "limit")
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    publisher: str
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, publisher: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("item_id", "kind", "reward", "drop", "rater", "latency_s", "reason")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    RATER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    kind: str
    reward: float
    drop: bool
    rater: str
    latency_s: float
    reason: str
    def __init__(self, item_id: _Optional[str] = ..., kind: _Optional[str] = ..., reward: _Optional[float] = ..., drop: _Optional[bool] = ..., rater: _Optional[str] = ..., latency_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class CollectResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ...) -> None: ...
