"""The wire data model: one msgspec definition per Literal AI object.

Every part of the agent (API client, pipeline, daemon, tracer, collector tests) uses these
types. Attribute names are the reference SDK's (``Step.thread_id``, ``Score.step_id``...);
on the wire they travel in camelCase (``threadId``, ``stepId``), as Literal AI's GraphQL and
REST endpoints expect. ``to_dict()`` gives the wire form, ``from_dict()`` reads it back,
mirroring the reference SDK's helpers.

Schema evolution: new fields get defaults and go last (msgspec's rule), so older payloads
keep decoding.
"""

from __future__ import annotations

import datetime as _dt
import enum
import html
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, TypeAlias, TypedDict, TypeVar

import msgspec

__all__ = [
    "Attachment",
    "AttachmentDict",
    "AttachmentUpload",
    "BaseGeneration",
    "ChatGeneration",
    "CompletionGeneration",
    "Dataset",
    "DatasetExperiment",
    "DatasetExperimentItem",
    "DatasetItem",
    "DatasetType",
    "Environment",
    "Filter",
    "Generation",
    "GenerationMessage",
    "GenerationType",
    "MaybeAwaitable",
    "OrderBy",
    "PageInfo",
    "PaginatedResponse",
    "Prompt",
    "PromptLineage",
    "PromptMessage",
    "PromptRollout",
    "ProviderSettings",
    "Score",
    "ScoreDict",
    "ScoreType",
    "ScoreUpdate",
    "Step",
    "StepDict",
    "StepType",
    "Thread",
    "User",
    "new_id",
    "utc_now",
]

T = TypeVar("T")
_T = TypeVar("_T")


def new_id() -> str:
    """A fresh object id (UUID4 string), as the reference SDK generates them."""
    return str(uuid.uuid4())


def utc_now() -> str:
    """The current UTC time in the reference SDK's wire format (``2024-05-01T12:34:56.123456Z``)."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat() + "Z"


# --------------------------------------------------------------------------- enumerations


class StepType(enum.StrEnum):
    """Kinds of step. The first seven are "true" steps, the last three are messages."""

    RUN = "run"
    TOOL = "tool"
    LLM = "llm"
    EMBEDDING = "embedding"
    RETRIEVAL = "retrieval"
    RERANK = "rerank"
    UNDEFINED = "undefined"
    USER_MESSAGE = "user_message"
    ASSISTANT_MESSAGE = "assistant_message"
    SYSTEM_MESSAGE = "system_message"


MESSAGE_STEP_TYPES = frozenset(
    {StepType.USER_MESSAGE, StepType.ASSISTANT_MESSAGE, StepType.SYSTEM_MESSAGE}
)


class ScoreType(enum.StrEnum):
    HUMAN = "HUMAN"
    CODE = "CODE"
    AI = "AI"


class GenerationType(enum.StrEnum):
    CHAT = "CHAT"
    COMPLETION = "COMPLETION"


class DatasetType(enum.StrEnum):
    KEY_VALUE = "key_value"
    GENERATION = "generation"


class Environment(enum.StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"
    EXPERIMENT = "experiment"


# --------------------------------------------------------------------------- typed dicts


class GenerationMessage(TypedDict, total=False):
    """One chat message of a generation (the OpenAI message shape)."""

    uuid: str
    templated: bool
    name: str
    role: Literal["user", "assistant", "tool", "function", "system"]
    content: str | list[dict[str, Any]] | None
    function_call: dict[str, Any]
    tool_calls: list[dict[str, Any]]
    tool_call_id: str


class ScoreDict(TypedDict, total=False):
    id: str
    name: str
    type: str
    value: float
    label: str | None
    stepId: str | None
    datasetExperimentItemId: str | None
    comment: str | None
    tags: list[str] | None


class AttachmentDict(TypedDict, total=False):
    id: str
    stepId: str | None
    threadId: str | None
    metadata: dict[str, Any] | None
    mime: str | None
    name: str | None
    objectKey: str | None
    url: str | None


class StepDict(TypedDict, total=False):
    """The dict form of a step, accepted wherever a :class:`Step` is (``send_steps``)."""

    id: str
    name: str | None
    type: str | None
    threadId: str | None
    parentId: str | None
    rootRunId: str | None
    startTime: str | None
    endTime: str | None
    createdAt: str | None
    error: str | None
    input: Any
    output: Any
    metadata: dict[str, Any] | None
    tags: list[str] | None
    environment: str | None
    generation: dict[str, Any] | None
    scores: list[ScoreDict]
    attachments: list[AttachmentDict]


class Filter(TypedDict, total=False):
    """A list filter: ``{"field": ..., "operator": ..., "value": ..., "path": ...}``."""

    field: str
    operator: str
    value: Any
    path: str


class OrderBy(TypedDict):
    column: str
    direction: Literal["ASC", "DESC"]


class PromptRollout(TypedDict):
    version: int
    rollout: int


class ScoreUpdate(TypedDict, total=False):
    """What ``update_score`` may change."""

    comment: str | None
    value: float


class AttachmentUpload(TypedDict, total=False):
    """What ``update_attachment`` may change."""

    metadata: dict[str, Any] | None
    name: str | None
    mime: str | None
    objectKey: str | None
    url: str | None


class ProviderSettings(TypedDict, total=False):
    """LLM provider settings of a prompt."""

    provider: str
    model: str
    frequency_penalty: float
    max_tokens: int
    presence_penalty: float
    stop: list[str]
    temperature: float
    top_p: float


class PromptLineage(TypedDict, total=False):
    id: str
    name: str
    deletedAt: str | None


# --------------------------------------------------------------------------- base class


def _readable(value: Any) -> str:
    """``to_dict`` never fails: a value JSON cannot carry becomes its ``str()``."""
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break telemetry
        return f"<unprintable {type(value).__name__}>"


class _Wire(msgspec.Struct, kw_only=True, rename="camel", repr_omit_defaults=True):
    """Base of every wire object: camelCase on the wire, keyword-only construction."""

    def to_dict(self) -> dict[str, Any]:
        """The object as the JSON-ready dict sent on the wire."""
        out: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_readable)
        return out

    @classmethod
    def from_dict(cls: type[_W], data: dict[str, Any]) -> _W:
        """Build the object from a wire dict; unknown keys are ignored, ``null`` means default."""
        return msgspec.convert(_drop_nulls(data, cls), cls, str_keys=True)


_W = TypeVar("_W", bound=_Wire)


def _drop_nulls(data: dict[str, Any], cls: type[msgspec.Struct]) -> dict[str, Any]:
    """Drop ``null`` values for fields that are not nullable, so they take their default."""
    nullable = _NULLABLE.get(cls)
    if nullable is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        nullable = frozenset(
            f.encode_name
            for f in info.fields
            if (
                isinstance(f.type, msgspec.inspect.UnionType)
                and any(isinstance(t, msgspec.inspect.NoneType) for t in f.type.types)
            )
            or isinstance(f.type, msgspec.inspect.AnyType)
        )
        _NULLABLE[cls] = nullable
    return {k: v for k, v in data.items() if v is not None or k in nullable}


_NULLABLE: dict[type[msgspec.Struct], frozenset[str]] = {}


# --------------------------------------------------------------------------- observability


class Score(_Wire):
    """A score on a step, a generation or a dataset experiment item."""

    name: str = ""
    type: ScoreType = ScoreType.HUMAN
    value: float = 0.0
    id: str | None = msgspec.field(default_factory=new_id)
    step_id: str | None = None
    dataset_experiment_item_id: str | None = None
    comment: str | None = None
    tags: list[str] | None = None
    label: str | None = None

    def __getitem__(self, key: str) -> Any:
        """Dict-style access by wire key (``score["stepId"]``), for code written against
        the reference's sync ``create_scores``, which returns dicts."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


class Attachment(_Wire):
    """A file attached to a step (stored by object key or URL)."""

    id: str | None = msgspec.field(default_factory=new_id)
    thread_id: str | None = None
    step_id: str | None = None
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    mime: str | None = None
    name: str | None = None
    object_key: str | None = None
    url: str | None = None


class BaseGeneration(_Wire, tag_field="type"):
    """What chat and completion generations share (the LLM call of an ``llm`` step)."""

    id: str | None = None
    prompt_id: str | None = None
    provider: str | None = None
    model: str | None = None
    error: str | None = None
    settings: dict[str, Any] | None = msgspec.field(default_factory=dict)
    variables: dict[str, Any] | None = msgspec.field(default_factory=dict)
    tags: list[str] | None = msgspec.field(default_factory=list)
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    token_count: int | None = None
    input_token_count: int | None = None
    output_token_count: int | None = None
    tt_first_token: float | None = None
    token_throughput_in_s: float | None = msgspec.field(
        default=None, name="tokenThroughputInSeconds"
    )
    duration: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:  # type: ignore[override]
        """Build a :class:`ChatGeneration` or :class:`CompletionGeneration` from its ``type``."""
        kind = data.get("type")
        if kind not in ("CHAT", "COMPLETION"):
            raise ValueError(f"generation type must be CHAT or COMPLETION, got {kind!r}")
        target: type[Generation] = ChatGeneration if kind == "CHAT" else CompletionGeneration
        # As the reference reads them: absent settings/variables/tags are None, not empty.
        data = {"settings": None, "variables": None, "tags": None, **data}
        return msgspec.convert(_drop_nulls(data, target), target, str_keys=True)


class ChatGeneration(BaseGeneration, tag="CHAT"):
    """A chat-model call: ``messages`` in, ``message_completion`` out."""

    messages: list[GenerationMessage] | None = msgspec.field(default_factory=list)
    message_completion: GenerationMessage | None = None

    @property
    def type(self) -> GenerationType:
        return GenerationType.CHAT


class CompletionGeneration(BaseGeneration, tag="COMPLETION"):
    """A text-completion call: ``prompt`` in, ``completion`` out."""

    prompt: str | None = None
    completion: str | None = None

    @property
    def type(self) -> GenerationType:
        return GenerationType.COMPLETION


Generation = ChatGeneration | CompletionGeneration


class Step(_Wire, dict=True):
    """One unit of work: a run, a tool call, an LLM call, a message...

    ``environment`` and ``created_at`` are set by the server and never sent by
    :meth:`to_dict`. ``dict=True`` lets integrations hang private attributes on a step.
    """

    id: str = msgspec.field(default_factory=new_id)
    name: str | None = ""
    type: StepType | None = StepType.UNDEFINED
    thread_id: str | None = None
    parent_id: str | None = None
    root_run_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    created_at: str | None = None
    error: str | None = None
    input: Any = None
    output: Any = None
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    tags: list[str] | None = None
    environment: str | None = None
    generation: ChatGeneration | CompletionGeneration | None = None
    scores: list[Score] = msgspec.field(default_factory=list)
    attachments: list[Attachment] = msgspec.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ingest form: every field but ``environment`` and ``createdAt``."""
        out = msgspec.to_builtins(self, enc_hook=_readable)
        out.pop("environment", None)
        out.pop("createdAt", None)
        return out  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:  # type: ignore[override]
        data = dict(data)
        generation = data.pop("generation", None)
        # The reference keeps a generation only on llm steps; a stray one on another
        # type is ignored rather than failing the whole read.
        step = msgspec.convert(_drop_nulls(data, Step), Step, str_keys=True)
        if generation and step.type == StepType.LLM:
            step.generation = BaseGeneration.from_dict(generation)
        return step


class User(_Wire):
    """A participant (an end user of the LLM application)."""

    id: str | None = None
    identifier: str = ""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    created_at: str | None = None


class Thread(_Wire):
    """A conversation: steps grouped under one id, optionally tied to a participant."""

    id: str = ""
    name: str | None = None
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    tags: list[str] | None = msgspec.field(default_factory=list)
    created_at: str | None = None
    steps: list[Step] | None = msgspec.field(default_factory=list)
    participant_id: str | None = None
    participant_identifier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = msgspec.to_builtins(self, enc_hook=_readable)
        participant_id = out.pop("participantId", None)
        identifier = out.pop("participantIdentifier", None)
        out["participant"] = (
            {"id": participant_id, "identifier": identifier} if participant_id else {}
        )
        return out  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thread:  # type: ignore[override]
        data = dict(data)
        participant = data.pop("participant", None) or {}
        steps = data.pop("steps", None) or []
        thread = msgspec.convert(_drop_nulls(data, Thread), Thread, str_keys=True)
        thread.participant_id = participant.get("id")
        thread.participant_identifier = participant.get("identifier")
        thread.steps = [Step.from_dict(s) for s in steps]
        return thread


class PageInfo(_Wire):
    has_next_page: bool = False
    start_cursor: str | None = None
    end_cursor: str | None = None


class PaginatedResponse(_Wire, Generic[T]):
    """One page of a list query: ``data``, ``page_info`` and ``total_count``."""

    page_info: PageInfo = msgspec.field(default_factory=PageInfo)
    data: list[T] = msgspec.field(default_factory=list)
    total_count: int | None = None

    @staticmethod
    def parse(item_type: type[T], data: dict[str, Any]) -> PaginatedResponse[T]:
        """Read a page whose items are ``item_type`` (``PaginatedResponse.parse(User, d)``)."""
        return msgspec.convert(data, PaginatedResponse[item_type], str_keys=True)  # type: ignore[valid-type]


# --------------------------------------------------------------------------- evaluation


class DatasetItem(_Wire):
    id: str = ""
    created_at: str | None = None
    dataset_id: str = ""
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    input: Any = None
    expected_output: Any = None
    intermediary_steps: list[dict[str, Any]] | None = None


MaybeAwaitable: TypeAlias = _T | Awaitable[_T]
"""A plain value from a sync API, an awaitable from an async one (dataset helpers)."""

_R = TypeVar("_R")


def _then(result: Any, after: Callable[[Any], _R]) -> MaybeAwaitable[_R]:
    """Apply ``after`` to a result now, or once awaited when the API is async."""
    if inspect.isawaitable(result):

        async def chained() -> _R:
            return after(await result)

        return chained()
    return after(result)


def _api_of(obj: msgspec.Struct) -> Any:
    api = getattr(obj, "api", None)
    if api is None:
        raise RuntimeError(
            f"this {type(obj).__name__} is not bound to an API object; get it from "
            "LiteralAPI/AsyncLiteralAPI (or set .api) before calling its helper methods"
        )
    return api


class Dataset(_Wire, dict=True):
    """A dataset and its items.

    Helper methods (``update``, ``create_item``...) go through ``api``, the API object that
    returned the dataset. With ``AsyncLiteralAPI`` they return awaitables
    (``await dataset.create_item(...)``); the reference hands async users a blocking sync
    client instead.
    """

    id: str = ""
    created_at: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = msgspec.field(default_factory=dict)
    items: list[DatasetItem] = msgspec.field(default_factory=list)
    type: DatasetType = DatasetType.KEY_VALUE

    def update(
        self,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MaybeAwaitable[None]:
        """Update the dataset and copy the new name, description and metadata back."""

        def copy_back(updated: Dataset) -> None:
            self.name = updated.name
            self.description = updated.description
            self.metadata = updated.metadata

        result = _api_of(self).update_dataset(
            self.id, name=name, description=description, metadata=metadata
        )
        return _then(result, copy_back)

    def delete(self) -> MaybeAwaitable[Dataset]:
        """Delete the dataset."""
        return _then(_api_of(self).delete_dataset(self.id), lambda deleted: deleted)

    def _append(self, item: DatasetItem) -> DatasetItem:
        self.items.append(item)
        return item

    def create_item(
        self,
        input: dict[str, Any],
        expected_output: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MaybeAwaitable[DatasetItem]:
        """Create an item in this dataset (and append it to ``items``)."""
        result = _api_of(self).create_dataset_item(self.id, input, expected_output, metadata)
        return _then(result, self._append)

    def create_experiment(
        self,
        name: str,
        prompt_variant_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> MaybeAwaitable[DatasetExperiment]:
        """Create an experiment on this dataset."""
        result = _api_of(self).create_experiment(
            name=name, dataset_id=self.id, prompt_variant_id=prompt_variant_id, params=params
        )
        return _then(result, lambda experiment: experiment)

    def delete_item(self, item_id: str) -> MaybeAwaitable[None]:
        """Delete an item of this dataset (and remove it from ``items``)."""

        def forget(_: Any) -> None:
            self.items = [item for item in self.items if item.id != item_id]

        return _then(_api_of(self).delete_dataset_item(item_id), forget)

    def add_step(
        self, step_id: str, metadata: dict[str, Any] | None = None
    ) -> MaybeAwaitable[DatasetItem]:
        """Add an item made from a step (not allowed on ``generation`` datasets)."""
        if self.type == DatasetType.GENERATION:
            raise ValueError("Cannot add a step to a generation dataset")
        result = _api_of(self).add_step_to_dataset(self.id, step_id, metadata)
        return _then(result, self._append)

    def add_generation(
        self, generation_id: str, metadata: dict[str, Any] | None = None
    ) -> MaybeAwaitable[DatasetItem]:
        """Add an item made from a generation."""
        result = _api_of(self).add_generation_to_dataset(self.id, generation_id, metadata)
        return _then(result, self._append)


class DatasetExperimentItem(_Wire):
    id: str | None = None
    dataset_experiment_id: str = ""
    dataset_item_id: str | None = None
    scores: list[ScoreDict] = msgspec.field(default_factory=list)
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    experiment_run_id: str | None = None


def _active_experiment_run_id() -> str | None:
    """The id of the current ``client.experiment_item_run()`` (the reference's
    ``active_experiment_item_run_id_var``), or ``None``."""
    from agent._context import get_current_experiment_run_id  # _context imports this module

    return get_current_experiment_run_id()


class DatasetExperiment(_Wire, dict=True):
    """An experiment run over a dataset; ``log()`` adds items through ``api`` (awaitable with
    ``AsyncLiteralAPI``)."""

    id: str = ""
    created_at: str | None = None
    name: str = ""
    dataset_id: str | None = None
    params: dict[str, Any] | None = None
    prompt_variant_id: str | None = msgspec.field(default=None, name="promptExperimentId")
    items: list[DatasetExperimentItem] = msgspec.field(default_factory=list)

    def log(self, item_dict: dict[str, Any]) -> MaybeAwaitable[DatasetExperimentItem]:
        """Log an item (``datasetItemId``, ``input``, ``output``, ``scores``) to the experiment."""
        item = DatasetExperimentItem(
            experiment_run_id=_active_experiment_run_id(),
            dataset_experiment_id=self.id,
            dataset_item_id=item_dict.get("datasetItemId"),
            input=item_dict.get("input", {}),
            output=item_dict.get("output", {}),
            scores=list(item_dict.get("scores", [])),
        )

        def append(created: DatasetExperimentItem) -> DatasetExperimentItem:
            self.items.append(created)
            return created

        return _then(_api_of(self).create_experiment_item(item), append)


# --------------------------------------------------------------------------- prompts


class PromptMessage(dict[str, Any]):
    """A formatted prompt message: a plain dict, plus the hidden ``__literal_prompt__``
    (``uuid``, ``prompt_id``, ``variables``) when the template message had a ``uuid``.
    Instrumentations use it to link the generation to the prompt version."""

    __literal_prompt__: dict[str, Any]

    def __init__(self, prompt_id: str, variables: dict[str, Any], message: dict[str, Any]) -> None:
        super().__init__(message)
        if "uuid" in self:
            self.__literal_prompt__ = {
                "uuid": self.pop("uuid"),
                "prompt_id": prompt_id,
                "variables": variables,
            }


def _format_text(template: str, variables: dict[str, Any]) -> str:
    from agent._mustache import render

    return html.unescape(render(template, variables))


class Prompt(_Wire, dict=True):
    """A prompt version of a lineage; ``format_messages`` renders its template."""

    id: str = ""
    name: str = ""
    version: int = 0
    url: str | None = ""
    created_at: str | None = ""
    updated_at: str | None = ""
    type: GenerationType = GenerationType.CHAT
    version_desc: str | None = None
    template_messages: list[GenerationMessage] = msgspec.field(default_factory=list)
    tools: list[dict[str, Any]] | None = msgspec.field(default_factory=list)
    provider: str = ""
    settings: dict[str, Any] = msgspec.field(default_factory=dict)
    variables: list[dict[str, Any]] | None = msgspec.field(default_factory=list)
    variables_default_values: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prompt:  # type: ignore[override]
        """Read a prompt version: ``name`` from ``lineage.name`` and ``provider`` taken out of
        ``settings`` (as the reference does); a ``null`` lineage or settings is tolerated."""
        data = dict(data)
        lineage = data.pop("lineage", None)
        settings = dict(data.pop("settings", None) or {})
        provider = settings.pop("provider", None) or data.pop("provider", None) or ""
        prompt = msgspec.convert(_drop_nulls(data, Prompt), Prompt, str_keys=True)
        if isinstance(lineage, dict) and lineage.get("name"):
            prompt.name = lineage["name"]
        prompt.settings = settings
        prompt.provider = provider
        return prompt

    def format_messages(self, **kwargs: Any) -> list[PromptMessage]:
        """The template messages with their variables rendered (mustache, then HTML
        entities unescaped); keyword arguments override ``variables_default_values``.

        Every template message needs a ``content`` (a string, or a list of parts whose
        ``text`` parts are rendered). The prompt's own template is left untouched.
        """
        variables = {**(self.variables_default_values or {}), **kwargs}
        formatted: list[PromptMessage] = []
        for message in self.template_messages:
            out = PromptMessage(self.id, variables, dict(message))
            content = out["content"]
            if isinstance(content, str):
                out["content"] = _format_text(content, variables)
            elif isinstance(content, list):
                out["content"] = [
                    {**part, "text": _format_text(part["text"], variables)}
                    if isinstance(part, dict) and part.get("type") == "text"
                    else part
                    for part in content
                ]
            formatted.append(out)
        return formatted

    def format(self, variables: dict[str, Any] | None = None) -> list[PromptMessage]:
        """Deprecated: use :meth:`format_messages`."""
        return self.format_messages(**(variables or {}))
