"""The one mapping from a finished span to a Literal step (used by the tracer and the bridge).

See the table in :mod:`agent.trace`. :func:`to_step` takes anything shaped like
:class:`SpanLike` plus the ids its caller resolved (the tracer knows its parents; the
OpenTelemetry bridge derives them from span contexts) and returns a :class:`Step`; it never
raises on odd attribute values (bad JSON stays a string, unknown roles are mapped).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from agent._hook_frozen import FROZEN_EMPTY
from agent._hook_ids import iso_from_ns, iso_pair
from agent._models import (
    ChatGeneration,
    CompletionGeneration,
    GenerationMessage,
    Step,
    StepType,
)

__all__ = [
    "ATTR_METADATA",
    "ATTR_NAME",
    "ATTR_PARENT_ID",
    "ATTR_ROOT_RUN_ID",
    "ATTR_STEP_TYPE",
    "ATTR_TAGS",
    "ATTR_THREAD_ID",
    "SpanLike",
    "exception_error",
    "is_special_key",
    "literal_attribute",
    "to_step",
]

#: Attribute choosing the step type (``run``, ``tool``, ``llm``, ``retrieval``...).
ATTR_STEP_TYPE = "literal.step_type"
#: Attribute putting the span's step (and, by inheritance, its descendants') in a thread.
ATTR_THREAD_ID = "literal.thread_id"
#: Attribute overriding the step name.
ATTR_NAME = "literal.name"
#: Attribute with step tags (a string sequence, or a JSON list).
ATTR_TAGS = "literal.tags"
#: Attribute with extra metadata (a JSON object string), merged into the attributes.
ATTR_METADATA = "literal.metadata"
#: Attributes overriding the resolved parent / root run (the reference SDK's association
#: properties, also read as ``traceloop.association.properties.literal.*``).
ATTR_PARENT_ID = "literal.parent_id"
ATTR_ROOT_RUN_ID = "literal.root_run_id"

_TRACELOOP = "traceloop.association.properties."
_MESSAGE_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.")
_MESSAGE_KEYS = frozenset({"gen_ai.input.messages", "gen_ai.output.messages",
                           "gen_ai.system_instructions"})
_STEP_TYPES = {t.value: t for t in StepType}
_ROLES = {
    "user": "user", "assistant": "assistant", "system": "system", "tool": "tool",
    "function": "function", "developer": "system", "model": "assistant", "ai": "assistant",
    "human": "user",
}
_SETTINGS = ("temperature", "max_tokens", "top_p", "top_k", "frequency_penalty",
             "presence_penalty", "stop_sequences", "seed", "choice.count")
_STATUS_ERROR = 2
_RUN = StepType.RUN
_UNDEFINED = StepType.UNDEFINED
_KIND_NAMES = {1: "server", 2: "client", 3: "producer", 4: "consumer"}


class SpanLike(Protocol):
    """What :func:`to_step` reads from a finished span."""

    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def kind_value(self) -> int: ...
    @property
    def status_value(self) -> int: ...
    @property
    def status_description(self) -> str | None: ...
    @property
    def events(self) -> Sequence[tuple[str, int, Mapping[str, Any]]]: ...
    @property
    def special(self) -> bool:
        """Whether any attribute key is ``literal.*``, ``gen_ai.*`` or ``traceloop.*``."""
        ...
    @property
    def plain(self) -> bool:
        """No special attribute, no event, no status, kind ``INTERNAL``: the fast path."""
        ...


def is_special_key(key: str) -> bool:
    """Whether an attribute key is read by the mapping (not just copied to metadata)."""
    return key.startswith(("literal.", "gen_ai.", "traceloop.", "llm."))


def exception_error(kind: Any, message: Any) -> str:
    """A step ``error`` from an exception event: ``"<Type>: <message>"``.

    ``exception.type`` is qualified (``package.module.Error``) for non-builtin exceptions,
    as OpenTelemetry records it; the error keeps the class name only.
    """
    short = str(kind).rsplit(".", 1)[-1] if kind is not None else "Exception"
    return f"{short}: {message}" if message else short


def literal_attribute(attributes: Mapping[str, Any], name: str) -> Any:
    """``literal.<name>``, or the reference SDK's association-property spelling of it."""
    value = attributes.get(name)
    if value is None:
        value = attributes.get(_TRACELOOP + name)
    if value == "None":  # the reference SDK writes the string "None" for unset properties
        return None
    return value


def to_step(  # noqa: PLR0917 - positional on the tracer's hot path
    span: SpanLike,
    step_id: str,
    parent_id: str | None,
    root_run_id: str | None,
    thread_id: str | None,
    is_local_root: bool,
    error: str | None = None,
) -> Step:
    """Map a finished span to a step (see the table in :mod:`agent.trace`)."""
    attributes = span.attributes
    start_time, end_time = iso_pair(span.start_ns, span.end_ns)
    if span.plain and error is None:
        # Fastest path: plain attributes become the metadata as they are (the tracer's own
        # spans hand over their dict, which is frozen once the span has ended).
        step = Step(
            id=step_id,
            name=span.name,
            type=_RUN if is_local_root else _UNDEFINED,
            start_time=start_time,
            end_time=end_time,
            metadata=attributes if type(attributes) is dict else dict(attributes),
            scores=FROZEN_EMPTY,
            attachments=FROZEN_EMPTY,
        )
        if parent_id is not None:
            step.parent_id = parent_id
        if root_run_id is not None:
            step.root_run_id = root_run_id
        if thread_id is not None:
            step.thread_id = thread_id
        return step
    if error is None and span.status_value == _STATUS_ERROR:
        error = span.status_description or "Unknown error"
    events = span.events
    if not span.special:
        # Fast path: plain attributes become the metadata as they are (the tracer's own
        # spans hand over their dict, which is frozen once the span has ended).
        metadata: dict[str, Any] = attributes if type(attributes) is dict else dict(attributes)
        if span.kind_value:
            metadata["otel.span_kind"] = _KIND_NAMES.get(span.kind_value, "internal")
        if events:
            metadata["otel.events"] = _events(events)
        return Step(
            id=step_id,
            name=span.name,
            type=_RUN if is_local_root else _UNDEFINED,
            thread_id=thread_id,
            parent_id=parent_id,
            root_run_id=root_run_id,
            start_time=start_time,
            end_time=end_time,
            error=error,
            metadata=metadata,
            scores=FROZEN_EMPTY,
            attachments=FROZEN_EMPTY,
        )
    return _special_step(
        span,
        attributes,
        events,
        ids=(step_id, parent_id, root_run_id, thread_id),
        is_local_root=is_local_root,
        error=error,
        times=(start_time, end_time),
    )


def _special_step(
    span: SpanLike,
    attributes: Mapping[str, Any],
    events: Any,
    *,
    ids: tuple[str, str | None, str | None, str | None],
    is_local_root: bool,
    error: str | None,
    times: tuple[str, str],
) -> Step:
    step_id, parent_id, root_run_id, thread_id = ids
    start_time, end_time = times
    metadata: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.startswith(("literal.", _TRACELOOP)) or key in _MESSAGE_KEYS:
            continue
        if key.startswith(_MESSAGE_PREFIXES) and key.count(".") >= 3:
            continue
        metadata[key] = list(value) if isinstance(value, tuple) else value
    extra = _json_value(literal_attribute(attributes, ATTR_METADATA))
    if isinstance(extra, dict):
        metadata.update(extra)
    if span.kind_value:
        metadata["otel.span_kind"] = _KIND_NAMES.get(span.kind_value, "internal")
    if events:
        metadata["otel.events"] = _events(events)

    thread_id = _str_or(literal_attribute(attributes, ATTR_THREAD_ID), thread_id)
    parent_id = _str_or(literal_attribute(attributes, ATTR_PARENT_ID), parent_id)
    root_run_id = _str_or(literal_attribute(attributes, ATTR_ROOT_RUN_ID), root_run_id)
    name = _str_or(literal_attribute(attributes, ATTR_NAME), span.name) or span.name
    tags = _tags(literal_attribute(attributes, ATTR_TAGS))

    is_llm = (
        attributes.get("gen_ai.request.model") is not None
        or attributes.get("gen_ai.system") is not None
        or attributes.get("gen_ai.provider.name") is not None
    )
    operation = attributes.get("gen_ai.operation.name")
    step_type = _STEP_TYPES.get(str(literal_attribute(attributes, ATTR_STEP_TYPE)))
    if step_type is None:
        if operation == "embeddings":
            step_type = StepType.EMBEDDING
        elif operation == "execute_tool":
            step_type = StepType.TOOL
        elif is_llm:
            step_type = StepType.LLM
        else:
            step_type = StepType.RUN if is_local_root else StepType.UNDEFINED

    step = Step(
        id=step_id,
        name=name,
        type=step_type,
        thread_id=thread_id,
        parent_id=parent_id,
        root_run_id=root_run_id,
        start_time=start_time,
        end_time=end_time,
        error=error,
        metadata=metadata,
        tags=tags,
        scores=FROZEN_EMPTY,
        attachments=FROZEN_EMPTY,
    )
    if step_type is StepType.LLM and is_llm:
        _attach_generation(step, attributes, span.start_ns, span.end_ns, error)
    return step


def _attach_generation(
    step: Step, attributes: Mapping[str, Any], start_ns: int, end_ns: int, error: str | None
) -> None:
    request_model = attributes.get("gen_ai.request.model")
    model = attributes.get("gen_ai.response.model") or request_model
    provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
    settings: dict[str, Any] = {}
    if request_model is not None:
        settings["model"] = request_model
    for key in _SETTINGS:
        value = attributes.get(f"gen_ai.request.{key}")
        if value is not None:
            settings[key] = list(value) if isinstance(value, tuple) else value
    input_tokens = _int(attributes.get("gen_ai.usage.input_tokens",
                                       attributes.get("gen_ai.usage.prompt_tokens")))
    output_tokens = _int(attributes.get("gen_ai.usage.output_tokens",
                                        attributes.get("gen_ai.usage.completion_tokens")))
    total = _int(attributes.get("llm.usage.total_tokens"))
    if total is None and input_tokens is not None and output_tokens is not None:
        total = input_tokens + output_tokens
    duration = max(end_ns - start_ns, 0) / 1e9
    throughput = output_tokens / duration if output_tokens and duration > 0 else None
    common: dict[str, Any] = {
        "provider": str(provider) if provider is not None else None,
        "model": str(model) if model is not None else None,
        "settings": settings,
        "input_token_count": input_tokens,
        "output_token_count": output_tokens,
        "token_count": total,
        "duration": duration,
        "token_throughput_in_s": throughput,
        "error": error,
    }
    operation = attributes.get("gen_ai.operation.name")
    if operation == "text_completion" or attributes.get("llm.request.type") == "completion":
        prompt = attributes.get("gen_ai.prompt.0.content", attributes.get("gen_ai.prompt.0.user"))
        completion = attributes.get("gen_ai.completion.0.content")
        step.generation = CompletionGeneration(
            prompt=_text(prompt), completion=_text(completion), **common
        )
        step.input = {"content": step.generation.prompt}
        step.output = {"content": step.generation.completion}
        return
    messages = _indexed_messages(attributes, "gen_ai.prompt.")
    completions = _indexed_messages(attributes, "gen_ai.completion.")
    if not messages:
        messages = _semconv_messages(attributes.get("gen_ai.system_instructions"), "system")
        messages += _semconv_messages(attributes.get("gen_ai.input.messages"), "user")
    if not completions:
        completions = _semconv_messages(attributes.get("gen_ai.output.messages"), "assistant")
    completion = completions[-1] if completions else None
    messages = messages + completions[:-1]
    step.generation = ChatGeneration(messages=messages, message_completion=completion, **common)
    step.input = {"content": messages}
    step.output = {"content": completion}


def _indexed_messages(attributes: Mapping[str, Any], prefix: str) -> list[GenerationMessage]:
    out: list[GenerationMessage] = []
    index = 0
    while True:
        role = attributes.get(f"{prefix}{index}.role")
        content = attributes.get(f"{prefix}{index}.content")
        if role is None and content is None:
            return out
        if role == "placeholder":
            return out
        message: GenerationMessage = {"role": _role(role, prefix)}  # type: ignore[typeddict-item]
        message["content"] = _content(_json_value(content))
        tool_call_id = attributes.get(f"{prefix}{index}.tool_call_id")
        if tool_call_id is not None:
            message["tool_call_id"] = str(tool_call_id)
        out.append(message)
        index += 1


def _semconv_messages(raw: Any, default_role: str) -> list[GenerationMessage]:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON, parts-based)."""
    value = _json_value(raw)
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]  # type: ignore[typeddict-item]
    if isinstance(value, dict):
        value = [value]
    out: list[GenerationMessage] = []
    if not isinstance(value, list):
        return out
    for item in value:
        if not isinstance(item, dict):
            out.append({"role": default_role, "content": str(item)})  # type: ignore[typeddict-item]
            continue
        message: GenerationMessage = {
            "role": _role(item.get("role", default_role), default_role)  # type: ignore[typeddict-item]
        }
        if "parts" in item:
            _apply_parts(message, item["parts"])
        else:
            message["content"] = _content(item.get("content"))
        out.append(message)
    return out


def _apply_parts(message: GenerationMessage, parts: Any) -> None:
    texts: list[str] = []
    rich: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("content", part.get("text", "")))
            texts.append(text)
            rich.append({"type": "text", "text": text})
        elif kind == "tool_call":
            arguments = part.get("arguments")
            tool_calls.append({
                "id": part.get("id"),
                "type": "function",
                "function": {
                    "name": part.get("name"),
                    "arguments": arguments if isinstance(arguments, str)
                    else json.dumps(arguments, default=str),
                },
            })
        elif kind == "tool_call_response":
            message["role"] = "tool"
            if part.get("id") is not None:
                message["tool_call_id"] = str(part["id"])
            response = part.get("response", part.get("result"))
            texts.append(
                response if isinstance(response, str) else json.dumps(response, default=str)
            )
        elif kind in ("uri", "image", "blob") or "image_url" in part:
            url = part.get("uri") or part.get("url") or part.get("image_url")
            rich.append({"type": "image_url", "image_url": {"url": url}})
    if tool_calls:
        message["tool_calls"] = tool_calls
    if len(rich) > len(texts) or (rich and any(p["type"] != "text" for p in rich)):
        message["content"] = rich
    else:
        message["content"] = "".join(texts) if texts else None


def _role(value: Any, prefix_or_default: str) -> str:
    role = _ROLES.get(str(value).lower()) if value is not None else None
    if role is not None:
        return role
    if prefix_or_default.startswith("gen_ai.completion") or prefix_or_default == "assistant":
        return "assistant"
    if prefix_or_default == "system":
        return "system"
    return "user"


def _content(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return value
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_or(value: Any, default: str | None) -> str | None:
    if value is None or value == "":
        return default
    return str(value)


def _tags(value: Any) -> list[str] | None:
    value = _json_value(value)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return [str(value)]


def _events(events: Iterable[tuple[str, int, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"name": name, "time": iso_from_ns(ts), "attributes": dict(attrs) if attrs else {}}
        for name, ts, attrs in events
    ]
