"""literal-agent: a telemetry agent for LLM applications that speaks the Literal AI API."""

__version__ = "0.1.0"
