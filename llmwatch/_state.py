"""Where llmwatch's process-wide state lives, and the one reset of all of it (for tests).

The hot path reads each piece from the room that owns it, with no indirection, so the pieces stay
where they are used; this module is their list and their one reset:

- the runtime the calls read (tracer, metrics, prices, content policy, pipeline): ``_core/_runtime.CURRENT``,
  swapped whole by ``configure()``/``shutdown()`` (``_api``);
- budgets, kill switches and circuit breakers: ``_policy/_budget.RULES``; rollouts and the responses
  made in them: ``_policy/_rollouts.ROLLOUTS``, ``SCORED``;
- each provider's recent calls (last success, error rate, latency) behind ``health()``:
  ``_core/_provider_stats.PROVIDERS``;
- which clients are traced, and the installed SDK hooks: ``_instrument`` (``REGISTRY``, the hook table);
- counters behind ``stats()``: ``_health.HEALTH``, and the unpriced calls ``_policy/_pricing.UNPRICED``;
- metric measurements queued for the drainer: ``_export/_metrics`` (dropped by the reset);
- where each OpenAI-SDK client's base URL leads (provider, host): ``_instrument/_endpoints``, a cache;
- the completion index behind ``score()``: ``_core/_completions.COMPLETIONS``;
- what the Batch API hooks saw (batch -> submitting span, file -> batch) and the result counts:
  ``_instrument/_openai_batch.MEMORY``, ``_openai_batch_results.STATS``;
- background workers, each started on first need: the tiktoken loader and the price import
  (``_policy``), the metrics drainer and the batch results reader (renewed in a forked child through
  ``_forking``), the span export worker and the JSON Lines file (``_export``, with their own
  per-instance fork hooks), and with a store the fleet worker (``_policy/_shared``, ``_fleet``; its
  own fork hook, and stopped here, its leases returned).
"""

from __future__ import annotations

from llmwatch import _health, _instrument
from llmwatch._core import _runtime
from llmwatch._core._provider_stats import PROVIDERS
from llmwatch._export import _metrics
from llmwatch._instrument import _anthropic, _endpoints, _frameworks, _openai_batch, _openai_batch_results
from llmwatch._instrument._base import REGISTRY
from llmwatch._policy import _shared
from llmwatch._policy._budget import RULES
from llmwatch._policy._pricing import UNPRICED
from llmwatch._policy._rollouts import ROLLOUTS, SCORED


def reset_for_tests() -> None:
    """Back to the state of a fresh import: no configuration, rules, hooks, marked clients or counts.

    The tiktoken loader keeps what it loaded (loading again costs seconds and changes nothing)."""
    _openai_batch_results.wait_idle(5.0)  # a file still being read would record into the next test
    _shared.stop(1.0)
    RULES.reset()
    ROLLOUTS.reset()
    SCORED.clear()
    _instrument.uninstall_all()
    _frameworks.uninstall_all()  # a bridge installed by one test's instrument_all() must not trace the next
    REGISTRY.global_enabled = False
    REGISTRY.clear()
    _runtime.swap(_runtime.default_runtime())
    _anthropic.restore_sdk_tracer()  # a test that left llmwatch's provider global must not leak it on
    _metrics.forget_pending()  # before the counters reset: measurements queued by the last test go nowhere
    _health.HEALTH.reset()
    PROVIDERS.reset()
    UNPRICED.clear()
    _endpoints.forget()
    _openai_batch.MEMORY.clear()
    _openai_batch_results.reset()
