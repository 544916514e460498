from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardPart(_message.Message):
    __slots__ = ("name", "value", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    weight: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class FeedbackMeta(_message.Message):
    __slots__ = ("source", "latency_s", "rater")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    RATER_FIELD_NUMBER: _ClassVar[int]
    source: str
    latency_s: float
    rater: str
    def __init__(self, source: _Optional[str] = ..., latency_s: _Optional[float] = ..., rater: _Optional[str] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("id", "group_id", "prompt_ids", "completion_ids", "behavior_logprobs", "reward", "reward_parts", "policy_version", "worker_id", "feedback", "group_size", "prompt_key")
    ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_IDS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOR_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    REWARD_PARTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    group_id: str
    prompt_ids: bytes
    completion_ids: bytes
    behavior_logprobs: bytes
    reward: float
    reward_parts: _containers.RepeatedCompositeFieldContainer[RewardPart]
    policy_version: int
    worker_id: str
    feedback: FeedbackMeta
    group_size: int
    prompt_key: str
    def __init__(self, id: _Optional[str] = ..., group_id: _Optional[str] = ..., prompt_ids: _Optional[bytes] = ..., completion_ids: _Optional[bytes] = ..., behavior_logprobs: _Optional[bytes] = ..., reward: _Optional[float] = ..., reward_parts: _Optional[_Iterable[_Union[RewardPart, _Mapping]]] = ..., policy_version: _Optional[int] = ..., worker_id: _Optional[str] = ..., feedback: _Optional[_Union[FeedbackMeta, _Mapping]] = ..., group_size: _Optional[int] = ..., prompt_key: _Optional[str] = ...) -> None: ...

class TrajectoryBatch(_message.Message):
    __slots__ = ("batch_seq", "trajectories", "hello", "columns")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    trajectories: _containers.RepeatedCompositeFieldContainer[Trajectory]
    hello: Hello
    columns: TrajectoryColumns
    def __init__(self, batch_seq: _Optional[int] = ..., trajectories: _Optional[_Iterable[_Union[Trajectory, _Mapping]]] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., columns: _Optional[_Union[TrajectoryColumns, _Mapping]] = ...) -> None: ...

class TrajectoryColumns(_message.Message):
    __slots__ = ("id", "group_id", "prompt_lens", "completion_lens", "prompt_ids", "completion_ids", "behavior_logprobs", "logprob_lens", "reward", "policy_version", "group_size", "worker_id", "prompt_key", "reward_part_counts", "reward_part_name", "reward_part_value", "reward_part_weight", "feedback_source", "feedback_latency_s", "rater")
    ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_LENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_LENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_IDS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOR_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_LENS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_KEY_FIELD_NUMBER: _ClassVar[int]
    REWARD_PART_COUNTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_PART_NAME_FIELD_NUMBER: _ClassVar[int]
    REWARD_PART_VALUE_FIELD_NUMBER: _ClassVar[int]
    REWARD_PART_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    RATER_FIELD_NUMBER: _ClassVar[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    group_id: _containers.RepeatedScalarFieldContainer[str]
    prompt_lens: bytes
    completion_lens: bytes
    prompt_ids: bytes
    completion_ids: bytes
    behavior_logprobs: bytes
    logprob_lens: bytes
    reward: bytes
    policy_version: bytes
    group_size: bytes
    worker_id: _containers.RepeatedScalarFieldContainer[str]
    prompt_key: _containers.RepeatedScalarFieldContainer[str]
    reward_part_counts: bytes
    reward_part_name: _containers.RepeatedScalarFieldContainer[str]
    reward_part_value: bytes
    reward_part_weight: bytes
    feedback_source: _containers.RepeatedScalarFieldContainer[str]
    feedback_latency_s: bytes
    rater: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[_Iterable[str]] = ..., group_id: _Optional[_Iterable[str]] = ..., prompt_lens: _Optional[bytes] = ..., completion_lens: _Optional[bytes] = ..., prompt_ids: _Optional[bytes] = ..., completion_ids: _Optional[bytes] = ..., behavior_logprobs: _Optional[bytes] = ..., logprob_lens: _Optional[bytes] = ..., reward: _Optional[bytes] = ..., policy_version: _Optional[bytes] = ..., group_size: _Optional[bytes] = ..., worker_id: _Optional[_Iterable[str]] = ..., prompt_key: _Optional[_Iterable[str]] = ..., reward_part_counts: _Optional[bytes] = ..., reward_part_name: _Optional[_Iterable[str]] = ..., reward_part_value: _Optional[bytes] = ..., reward_part_weight: _Optional[bytes] = ..., feedback_source: _Optional[_Iterable[str]] = ..., feedback_latency_s: _Optional[bytes] = ..., rater: _Optional[_Iterable[str]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("batch_seq", "accepted", "duplicate", "rejected", "credits", "learner_version", "accepted_rest", "incarnation", "durable_version")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_REST_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    DURABLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    accepted: _containers.RepeatedScalarFieldContainer[str]
    duplicate: _containers.RepeatedScalarFieldContainer[str]
    rejected: _containers.RepeatedCompositeFieldContainer[Rejection]
    credits: int
    learner_version: int
    accepted_rest: bool
    incarnation: str
    durable_version: int
    def __init__(self, batch_seq: _Optional[int] = ..., accepted: _Optional[_Iterable[str]] = ..., duplicate: _Optional[_Iterable[str]] = ..., rejected: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., credits: _Optional[int] = ..., learner_version: _Optional[int] = ..., accepted_rest: _Optional[bool] = ..., incarnation: _Optional[str] = ..., durable_version: _Optional[int] = ...) -> None: ...
