"""llmwatch: observe LLM calls in production.

Every call through the instrumented OpenAI and Anthropic SDKs (or recorded with ``llm_call``)
becomes an OpenTelemetry span following the GenAI semantic conventions, with tokens, cost in USD,
latency, time to first token and the user/feature it is attributed to::

    import llmwatch

    llmwatch.configure(service_name="checkout")
    with llmwatch.attributes(user="u-42", feature="search"):
        client.chat.completions.create(...)

Only this package root is API; every submodule is private.
"""

from llmwatch._api import (
    budget,
    circuit_breaker,
    configure,
    force_flush,
    health,
    health_app,
    instrument,
    kill_switch,
    rollout,
    rollout_arm,
    shutdown,
    stats,
    uninstrument,
)
from llmwatch._attribution import attributes, prompt
from llmwatch._core._runtime import VERSION as __version__
from llmwatch._errors import BudgetExceeded, CircuitOpen, ConfigurationError, FeatureDisabled
from llmwatch._instrument._manual import llm_call
from llmwatch._instrument._observe import observe
from llmwatch._scores import score

__all__ = [
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigurationError",
    "FeatureDisabled",
    "__version__",
    "attributes",
    "budget",
    "circuit_breaker",
    "configure",
    "force_flush",
    "health",
    "health_app",
    "instrument",
    "kill_switch",
    "llm_call",
    "observe",
    "prompt",
    "rollout",
    "rollout_arm",
    "score",
    "shutdown",
    "stats",
    "uninstrument",
]
