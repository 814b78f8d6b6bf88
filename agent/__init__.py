"""literal-agent: a telemetry agent for LLM applications that speaks the Literal AI API.

The public API lives here, in one flat namespace; implementation modules are private.
Names are resolved lazily so that ``import agent`` stays cheap for hot-path users and the
daemon's producers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    # data model
    "Attachment": "agent._models",
    "BaseGeneration": "agent._models",
    "ChatGeneration": "agent._models",
    "CompletionGeneration": "agent._models",
    "Dataset": "agent._models",
    "DatasetExperiment": "agent._models",
    "DatasetExperimentItem": "agent._models",
    "DatasetItem": "agent._models",
    "DatasetType": "agent._models",
    "Environment": "agent._models",
    "GenerationMessage": "agent._models",
    "GenerationType": "agent._models",
    "PageInfo": "agent._models",
    "PaginatedResponse": "agent._models",
    "Prompt": "agent._models",
    "Score": "agent._models",
    "ScoreType": "agent._models",
    "Step": "agent._models",
    "StepType": "agent._models",
    "Thread": "agent._models",
    "User": "agent._models",
    # API client
    "AsyncLiteralAPI": "agent._api",
    "LiteralAPI": "agent._api",
    # errors
    "AuthenticationError": "agent._exceptions",
    "BadRequestError": "agent._exceptions",
    "ClientClosedError": "agent._exceptions",
    "GraphQLError": "agent._exceptions",
    "HTTPStatusError": "agent._exceptions",
    "LiteralError": "agent._exceptions",
    "RateLimitedError": "agent._exceptions",
    "RequestTooLargeError": "agent._exceptions",
    "ServerError": "agent._exceptions",
    "TransportError": "agent._exceptions",
    # library hook
    "AsyncLiteralClient": "agent._client",
    "LiteralClient": "agent._client",
    # pipeline
    "FlushResult": "agent.pipeline",
    "Pipeline": "agent.pipeline",
    "PipelineStats": "agent.pipeline",
    # configuration and logging
    "AgentConfig": "agent._config",
    "ConfigError": "agent._config",
    "configure_logging": "agent._logging",
    "load_config": "agent._config",
}

__all__ = [
    "AgentConfig",
    "AsyncLiteralAPI",
    "AsyncLiteralClient",
    "Attachment",
    "AuthenticationError",
    "BadRequestError",
    "BaseGeneration",
    "ChatGeneration",
    "ClientClosedError",
    "CompletionGeneration",
    "ConfigError",
    "Dataset",
    "DatasetExperiment",
    "DatasetExperimentItem",
    "DatasetItem",
    "DatasetType",
    "Environment",
    "FlushResult",
    "GenerationMessage",
    "GenerationType",
    "GraphQLError",
    "HTTPStatusError",
    "LiteralAPI",
    "LiteralClient",
    "LiteralError",
    "PageInfo",
    "PaginatedResponse",
    "Pipeline",
    "PipelineStats",
    "Prompt",
    "RateLimitedError",
    "RequestTooLargeError",
    "Score",
    "ScoreType",
    "ServerError",
    "Step",
    "StepType",
    "Thread",
    "TransportError",
    "User",
    "__version__",
    "configure_logging",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from agent._api import AsyncLiteralAPI, LiteralAPI
    from agent._client import AsyncLiteralClient, LiteralClient
    from agent._config import AgentConfig, ConfigError, load_config
    from agent._exceptions import (
        AuthenticationError,
        BadRequestError,
        ClientClosedError,
        GraphQLError,
        HTTPStatusError,
        LiteralError,
        RateLimitedError,
        RequestTooLargeError,
        ServerError,
        TransportError,
    )
    from agent._logging import configure_logging
    from agent._models import (
        Attachment,
        BaseGeneration,
        ChatGeneration,
        CompletionGeneration,
        Dataset,
        DatasetExperiment,
        DatasetExperimentItem,
        DatasetItem,
        DatasetType,
        Environment,
        GenerationMessage,
        GenerationType,
        PageInfo,
        PaginatedResponse,
        Prompt,
        Score,
        ScoreType,
        Step,
        StepType,
        Thread,
        User,
    )
    from agent.pipeline import FlushResult, Pipeline, PipelineStats
