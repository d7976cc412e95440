"""Every attribute, event and metric name llmwatch emits, in one place.

Target: the OpenTelemetry GenAI semantic conventions v1.41.0. They are still experimental and still
being renamed, so no other module spells a name: a rename is one line here. Our own names live under
``llmwatch.*``.

``OTEL_SEMCONV_STABILITY_OPT_IN`` is honoured the way OTel's instrumentations do for GenAI (see
:class:`Naming`): by default the v1.41 names; with ``gen_ai_latest_experimental`` the newer names of
the GenAI conventions repository (open-telemetry/semantic-conventions-genai: its
``gen_ai.client.inference.*`` token metrics with ``gen_ai.token.modality`` in place of
``gen_ai.client.token.usage``, and the proposed ``gen_ai.usage.cost.*`` span attributes); with
``gen_ai_latest_experimental/dup`` both, and the deprecated ``gen_ai.system`` beside
``gen_ai.provider.name`` for backends that still read it.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from llmwatch import _config

# --- GenAI: request -------------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM_DEPRECATED: Final = "gen_ai.system"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"  # the registry has no version nor variables (v1.41)
# The general conventions' user and session (what Phoenix, MLflow, Langfuse read), beside llmwatch's own.
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"

# The request attributes the registry types as double: a caller's ``temperature=1`` goes out as 1.0.
DOUBLE_REQUEST_ATTRIBUTES: Final = frozenset(
    {
        GEN_AI_REQUEST_TEMPERATURE,
        GEN_AI_REQUEST_TOP_P,
        GEN_AI_REQUEST_TOP_K,
        GEN_AI_REQUEST_FREQUENCY_PENALTY,
        GEN_AI_REQUEST_PRESENCE_PENALTY,
    }
)

# --- GenAI: response ------------------------------------------------------------------------------
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"

# --- GenAI: usage ---------------------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
# The GenAI repo's newer name for the same count (used by the Anthropic SDK's own spans); both are
# emitted until backends settle (DESIGN.md).
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"

# --- GenAI: opt-in content ------------------------------------------------------------------------
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"
# The event that carries a call's content when it goes to events (the Logs API), not span attributes.
GEN_AI_CLIENT_INFERENCE_OPERATION_DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"
# Content kept elsewhere (configure(content_hook=)): references in place of the content, per semconv.
GEN_AI_INPUT_MESSAGES_REF: Final = "gen_ai.input.messages_ref"
GEN_AI_OUTPUT_MESSAGES_REF: Final = "gen_ai.output.messages_ref"
GEN_AI_SYSTEM_INSTRUCTIONS_REF: Final = "gen_ai.system_instructions_ref"
GEN_AI_TOOL_DEFINITIONS_REF: Final = "gen_ai.tool.definitions_ref"
CONTENT_SPAN: Final = "span"
CONTENT_EVENT: Final = "event"
CONTENT_SPAN_AND_EVENT: Final = "span_and_event"

# --- GenAI: evaluation ----------------------------------------------------------------------------
GEN_AI_EVALUATION_RESULT_EVENT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_TOKEN_MODALITY: Final = "gen_ai.token.modality"  # latest: text|image|audio|video|document|unknown
TOKEN_MODALITY_UNKNOWN: Final = "unknown"  # the provider reported no modality breakdown
TOKEN_MODALITIES: Final = frozenset({"text", "image", "audio", "video", "document", TOKEN_MODALITY_UNKNOWN})
# Proposed in the GenAI conventions repo (PR 443); emitted under gen_ai_latest_experimental only.
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"  # provider | local
COST_CURRENCY_USD: Final = "USD"
COST_SOURCE_LOCAL: Final = "local"  # priced by llmwatch from a price table

# --- General --------------------------------------------------------------------------------------
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# --- Operation and provider values ----------------------------------------------------------------
OP_CHAT: Final = "chat"
OP_EMBEDDINGS: Final = "embeddings"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_GENERATE_CONTENT: Final = "generate_content"  # multimodal generation: Gemini's generateContent, images, audio
OP_MODERATION: Final = "moderation"  # no semconv value applies: a classification generates nothing
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_CREATE_AGENT: Final = "create_agent"
# Operations of agent/tool/workflow spans: not LLM calls (no model, tokens or cost of their own).
AGENT_OPERATIONS: Final = frozenset({OP_INVOKE_AGENT, OP_EXECUTE_TOOL, OP_INVOKE_WORKFLOW, OP_CREATE_AGENT})

# --- GenAI: agents, tools, workflows ----------------------------------------------------------------
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_AGENT_VERSION: Final = "gen_ai.agent.version"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"  # function | extension | datastore
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"  # opt-in: content
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"  # opt-in: content
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
TOOL_TYPE_FUNCTION: Final = "function"
TOOL_TYPE_EXTENSION: Final = "extension"
TOOL_TYPE_DATASTORE: Final = "datastore"

# --- MCP (the GenAI conventions repo's model/mcp: spans "{mcp.method.name} {target}") -------------
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_SESSION_ID: Final = "mcp.session.id"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
MCP_RESOURCE_URI: Final = "mcp.resource.uri"
JSONRPC_REQUEST_ID: Final = "jsonrpc.request.id"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
NETWORK_TRANSPORT: Final = "network.transport"  # pipe (stdio) | tcp (streamable HTTP)
MCP_TOOLS_CALL: Final = "tools/call"
MCP_TOOLS_LIST: Final = "tools/list"
MCP_RESOURCES_READ: Final = "resources/read"
MCP_TOOL_ERROR: Final = "tool_error"  # error.type of a CallToolResult with isError
# W3C baggage entries carrying the caller's attribution in params._meta (same names as the attributes)
BAGGAGE_USER: Final = "llmwatch.user"
BAGGAGE_FEATURE: Final = "llmwatch.feature"
BAGGAGE_SESSION: Final = "llmwatch.session"
OUTPUT_TEXT: Final = "text"
PROVIDER_AWS_BEDROCK: Final = "aws.bedrock"
OUTPUT_JSON: Final = "json"
OUTPUT_IMAGE: Final = "image"
OUTPUT_SPEECH: Final = "speech"

# --- llmwatch's own -------------------------------------------------------------------------------
LLMWATCH_COST_USD: Final = "llmwatch.cost.usd"
LLMWATCH_COST_INPUT_USD: Final = "llmwatch.cost.input_usd"
LLMWATCH_COST_OUTPUT_USD: Final = "llmwatch.cost.output_usd"
LLMWATCH_COST_SOURCE: Final = "llmwatch.cost.source"
LLMWATCH_COST_UNKNOWN_MODEL: Final = "llmwatch.cost.unknown_model"
LLMWATCH_COST_UNPRICED_REASON: Final = "llmwatch.cost.unpriced_reason"  # billed, but not said for what
COST_SOURCE_PROVIDER: Final = "provider"  # the provider reported the cost itself (OpenRouter usage.cost)
COST_SOURCE_LITELLM: Final = "litellm"  # LiteLLM's response_cost, for a call llmwatch has no price for
LLMWATCH_LITELLM_PROVIDER: Final = "llmwatch.litellm.provider"  # LiteLLM's provider id (hosted_vllm, azure_ai)
LLMWATCH_PROVIDER_HOST: Final = "llmwatch.provider.host"  # an unrecognised OpenAI-compatible host
LLMWATCH_AZURE_DEPLOYMENT: Final = "llmwatch.azure.deployment"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"
OPENAI_API_TYPE: Final = "openai.api.type"
OPENAI_API_CHAT_COMPLETIONS: Final = "chat_completions"
OPENAI_API_RESPONSES: Final = "responses"
LLMWATCH_USAGE_SOURCE: Final = "llmwatch.usage.source"
# Billed units besides the token counts (images and audio): what the reply said, as priced.
LLMWATCH_USAGE_INPUT_AUDIO_TOKENS: Final = "llmwatch.usage.input_audio_tokens"
LLMWATCH_USAGE_OUTPUT_IMAGE_TOKENS: Final = "llmwatch.usage.output_image_tokens"
LLMWATCH_USAGE_INPUT_AUDIO_SECONDS: Final = "llmwatch.usage.input_audio_seconds"
LLMWATCH_USAGE_INPUT_CHARACTERS: Final = "llmwatch.usage.input_characters"
LLMWATCH_AUDIO_LANGUAGE: Final = "llmwatch.audio.language"
LLMWATCH_MODERATION_FLAGGED: Final = "llmwatch.moderation.flagged"
# The Batch API: the submission span, and each result line's span (OpenAI's ids).
LLMWATCH_BATCH_ID: Final = "llmwatch.batch.id"
LLMWATCH_BATCH_CUSTOM_ID: Final = "llmwatch.batch.custom_id"
LLMWATCH_BATCH_ENDPOINT: Final = "llmwatch.batch.endpoint"
LLMWATCH_BATCH_INPUT_FILE_ID: Final = "llmwatch.batch.input_file_id"
LLMWATCH_BATCH_STATUS: Final = "llmwatch.batch.status"
LLMWATCH_BATCH_COMPLETION_WINDOW: Final = "llmwatch.batch.completion_window"
LLMWATCH_BATCH_REQUESTS_TOTAL: Final = "llmwatch.batch.requests.total"
LLMWATCH_BATCH_REQUESTS_COMPLETED: Final = "llmwatch.batch.requests.completed"
LLMWATCH_BATCH_REQUESTS_FAILED: Final = "llmwatch.batch.requests.failed"
LLMWATCH_USER: Final = "llmwatch.user"
LLMWATCH_FEATURE: Final = "llmwatch.feature"
LLMWATCH_SESSION: Final = "llmwatch.session"
LLMWATCH_TAG_PREFIX: Final = "llmwatch.tag."
LLMWATCH_TIME_TO_FIRST_TOKEN_MS: Final = "llmwatch.time_to_first_token_ms"
LLMWATCH_PROMPT_NAME: Final = "llmwatch.prompt.name"
LLMWATCH_PROMPT_VERSION: Final = "llmwatch.prompt.version"
LLMWATCH_PROMPT_VARIABLES: Final = "llmwatch.prompt.variables"
LLMWATCH_PROMPT_FINGERPRINT: Final = "llmwatch.prompt.fingerprint"
LLMWATCH_STREAM: Final = "llmwatch.stream"
LLMWATCH_STREAM_COMPLETED: Final = "llmwatch.stream.completed"
LLMWATCH_STREAM_CHUNKS: Final = "llmwatch.stream.chunks"
LLMWATCH_SPAN_KIND: Final = "llmwatch.span.kind"
LLMWATCH_INPUT: Final = "llmwatch.input"
LLMWATCH_OUTPUT: Final = "llmwatch.output"
LLMWATCH_BUDGET_EXCEEDED: Final = "llmwatch.budget.exceeded"
LLMWATCH_BUDGET_FALLBACK: Final = "llmwatch.budget.fallback"
LLMWATCH_BUDGET_SCOPE: Final = "llmwatch.budget.scope"
LLMWATCH_BUDGET_WINDOW: Final = "llmwatch.budget.window"
LLMWATCH_REFUSAL_REASON: Final = "llmwatch.refusal.reason"
LLMWATCH_REFUSED_EVENT: Final = "llmwatch.call.refused"
# Circuit breakers (``circuit_breaker()``): the state a call was checked under, on its span and gauge.
LLMWATCH_CIRCUIT_STATE: Final = "llmwatch.circuit.state"  # span: closed | half_open | open
LLMWATCH_CIRCUIT_SCOPE: Final = "llmwatch.circuit.scope"  # provider=openai/model=*/feature=*
LLMWATCH_CIRCUIT_FROM: Final = "llmwatch.circuit.from"  # a transition's old state
LLMWATCH_CIRCUIT_TO: Final = "llmwatch.circuit.to"  # a transition's new state
LLMWATCH_CIRCUIT_FALLBACK: Final = "llmwatch.circuit.fallback"  # answered by the breaker's fallback
CIRCUIT_CLOSED: Final = "closed"
CIRCUIT_HALF_OPEN: Final = "half_open"
CIRCUIT_OPEN: Final = "open"
CIRCUIT_GAUGE_VALUES: Final = {CIRCUIT_CLOSED: 0, CIRCUIT_HALF_OPEN: 1, CIRCUIT_OPEN: 2}
# Rollouts (``rollout()``): the rollout a call was sent in and its arm (spans and metrics).
LLMWATCH_ROLLOUT_NAME: Final = "llmwatch.rollout.name"
LLMWATCH_ROLLOUT_ARM: Final = "llmwatch.rollout.arm"  # champion | challenger
LLMWATCH_ROLLOUT_SHADOW: Final = "llmwatch.rollout.shadow"  # a shadow call: its answer was discarded
LLMWATCH_ROLLOUT_ROLLBACK_EVENT: Final = "llmwatch.rollout.rollback"
LLMWATCH_ROLLOUT_PROMOTE_EVENT: Final = "llmwatch.rollout.promote"
LLMWATCH_ROLLOUT_EVIDENCE: Final = "llmwatch.rollout.evidence"  # the event's figures, as JSON
# Synthetic telemetry from ``llmwatch drill``: every span and metric point carries it.
LLMWATCH_DRILL: Final = "llmwatch.drill"
LLMWATCH_DRILL_SCENARIO: Final = "llmwatch.drill.scenario"

SPAN_KIND_WORKFLOW: Final = "workflow"
SPAN_KIND_TASK: Final = "task"
SPAN_KIND_AGENT: Final = "agent"
SPAN_KIND_TOOL: Final = "tool"
OBSERVE_KINDS: Final = (SPAN_KIND_WORKFLOW, SPAN_KIND_TASK, SPAN_KIND_AGENT, SPAN_KIND_TOOL)
# Rollups: the LLM calls beneath an observe span in this process, each counted once per ancestor.
LLMWATCH_ROLLUP_COST_USD: Final = "llmwatch.rollup.cost_usd"
LLMWATCH_ROLLUP_INPUT_TOKENS: Final = "llmwatch.rollup.input_tokens"
LLMWATCH_ROLLUP_OUTPUT_TOKENS: Final = "llmwatch.rollup.output_tokens"
LLMWATCH_ROLLUP_LLM_CALLS: Final = "llmwatch.rollup.llm_calls"
LLMWATCH_ROLLUP_UNPRICED_CALLS: Final = "llmwatch.rollup.unpriced_calls"  # in llm_calls, not in cost_usd
LLMWATCH_RUN_ID: Final = "llmwatch.run.id"  # one agent run: a random 64-bit id, set from its outermost span
LLMWATCH_AGENT_NAME: Final = "llmwatch.agent.name"  # on LLM spans: the innermost agent they ran in
# openai-agents handoff and guardrail spans (no GenAI convention for them)
LLMWATCH_HANDOFF_FROM_AGENT: Final = "llmwatch.handoff.from_agent"
LLMWATCH_HANDOFF_TO_AGENT: Final = "llmwatch.handoff.to_agent"
LLMWATCH_GUARDRAIL_NAME: Final = "llmwatch.guardrail.name"
LLMWATCH_GUARDRAIL_TRIGGERED: Final = "llmwatch.guardrail.triggered"

USAGE_SOURCE_PROVIDER: Final = "provider"
USAGE_SOURCE_TIKTOKEN: Final = "tiktoken"
USAGE_SOURCE_ESTIMATE: Final = "estimate"

# --- OpenInference (configure(backend_compat=["openinference"]): what Phoenix and other
# OpenInference readers show; Arize-ai/openinference spec/semantic_conventions.md) ------------------
OI_SPAN_KIND: Final = "openinference.span.kind"  # LLM | EMBEDDING | CHAIN | AGENT | TOOL | ...
OI_KIND_LLM: Final = "LLM"
OI_KIND_EMBEDDING: Final = "EMBEDDING"
OI_KIND_CHAIN: Final = "CHAIN"
OI_KIND_AGENT: Final = "AGENT"
OI_KIND_TOOL: Final = "TOOL"
OI_TOOL_NAME: Final = "tool.name"
OI_INPUT_VALUE: Final = "input.value"
OI_INPUT_MIME_TYPE: Final = "input.mime_type"
OI_OUTPUT_VALUE: Final = "output.value"
OI_OUTPUT_MIME_TYPE: Final = "output.mime_type"
OI_MIME_JSON: Final = "application/json"
OI_MIME_TEXT: Final = "text/plain"
OI_LLM_MODEL_NAME: Final = "llm.model_name"
OI_LLM_PROVIDER: Final = "llm.provider"  # openai | anthropic | google | aws | azure | ...
OI_LLM_SYSTEM: Final = "llm.system"
OI_LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
OI_LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
OI_LLM_TOKEN_COUNT_TOTAL: Final = "llm.token_count.total"
OI_LLM_TOKEN_COUNT_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OI_LLM_TOKEN_COUNT_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OI_LLM_TOKEN_COUNT_REASONING: Final = "llm.token_count.completion_details.reasoning"
OI_LLM_COST_TOTAL: Final = "llm.cost.total"
OI_LLM_COST_PROMPT: Final = "llm.cost.prompt"
OI_LLM_COST_COMPLETION: Final = "llm.cost.completion"
OI_LLM_INPUT_MESSAGES: Final = "llm.input_messages"  # + ".{i}.message.role" / ".content" / ".tool_calls..."
OI_LLM_OUTPUT_MESSAGES: Final = "llm.output_messages"
OI_MESSAGE_ROLE: Final = "message.role"
OI_MESSAGE_CONTENT: Final = "message.content"
OI_MESSAGE_TOOL_CALLS: Final = "message.tool_calls"  # + ".{j}.tool_call.function.name" / ".arguments"
OI_TOOL_CALL_ID: Final = "tool_call.id"
OI_TOOL_CALL_FUNCTION_NAME: Final = "tool_call.function.name"
OI_TOOL_CALL_FUNCTION_ARGUMENTS: Final = "tool_call.function.arguments"
OI_PROMPT_TEMPLATE_VERSION: Final = "llm.prompt_template.version"
OI_EMBEDDING_MODEL_NAME: Final = "embedding.model_name"
BACKEND_OPENINFERENCE: Final = "openinference"

# --- Metrics (v1.41 names, units, bucket advice) --------------------------------------------------
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_COST: Final = "llmwatch.cost"
METRIC_REFUSALS: Final = "llmwatch.calls.refused"
METRIC_UNPRICED: Final = "llmwatch.calls.unpriced"
METRIC_ERRORS: Final = "llmwatch.errors"
METRIC_BUDGET_SPENT: Final = "llmwatch.budget.spent"
METRIC_BUDGET_LIMIT: Final = "llmwatch.budget.limit"
METRIC_CIRCUIT_STATE: Final = "llmwatch.circuit.state"  # gauge: 0 closed, 1 half-open, 2 open
METRIC_CIRCUIT_TRANSITIONS: Final = "llmwatch.circuit.transitions"
METRIC_ROLLOUT_ROLLBACKS: Final = "llmwatch.rollout.rollbacks"
# The GenAI conventions repo's token metrics (gen_ai_latest_experimental): counters per modality
# (for each call, failed ones too: 0 with modality ``unknown`` when no usage came back) and per-call
# histograms.
METRIC_INFERENCE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
METRIC_INFERENCE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
METRIC_INFERENCE_CACHE_READ_TOKENS: Final = "gen_ai.client.inference.usage.cache_read.input_tokens"
METRIC_INFERENCE_CACHE_WRITE_TOKENS: Final = "gen_ai.client.inference.usage.cache_write.input_tokens"
METRIC_INFERENCE_REASONING_TOKENS: Final = "gen_ai.client.inference.usage.reasoning.output_tokens"
METRIC_INFERENCE_OPERATION_INPUT_TOKENS: Final = "gen_ai.client.inference.operation.input_tokens"
METRIC_INFERENCE_OPERATION_OUTPUT_TOKENS: Final = "gen_ai.client.inference.operation.output_tokens"
TOKEN_BUCKETS: Final = tuple(float(4**i) for i in range(14))  # 1 .. 67108864, powers of 4
DURATION_BUCKETS: Final = tuple(0.01 * 2**i for i in range(14))  # 0.01 .. 81.92 s, doubling


OPT_IN_LATEST: Final = "gen_ai_latest_experimental"
OPT_IN_LATEST_DUP: Final = "gen_ai_latest_experimental/dup"


@dataclasses.dataclass(frozen=True)
class Naming:
    """Which generation of names to emit, read once per ``configure()``.

    ``v141``: the v1.41 registry's (the default); ``latest``: the GenAI conventions repo's newer ones;
    ``/dup`` turns both on (a migration window), and the deprecated ``gen_ai.system`` with them.
    """

    v141: bool = True
    latest: bool = False
    deprecated_system: bool = False


def naming() -> Naming:
    """The :class:`Naming` that ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for."""
    opt_in: frozenset[str] = _config.env("semconv_stability_opt_in")  # OTEL_SEMCONV_STABILITY_OPT_IN
    if OPT_IN_LATEST_DUP in opt_in:
        return Naming(v141=True, latest=True, deprecated_system=True)
    if OPT_IN_LATEST in opt_in:
        return Naming(v141=False, latest=True)
    return Naming()
