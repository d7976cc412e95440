"""``configure(backend_compat=["openinference"])``: the OpenInference attributes beside the GenAI ones.

Why: Arize Phoenix (and other OpenInference readers: MLflow, Langfuse) build their views from
OpenInference's own attribute names. Phoenix (20.x) converts the GenAI ``gen_ai.*`` attributes of LLM
spans itself, but not into ``input.value``/``output.value``: without these its input and output panes
are empty (the output shows the response's ``{"id", "model"}``) and a workflow root's kind is
``UNKNOWN``. With them (checked against a real Phoenix: ``benchmarks/phoenix_check.py``,
docs/phoenix.md) it shows the chat (``llm.input_messages`` / ``llm.output_messages``),
``input.value`` / ``output.value``, model, provider, tokens, and ``openinference.span.kind`` on LLM,
embedding and workflow spans, as llmwatch sent them. Names follow Arize-ai/openinference
``spec/semantic_conventions.md``.

The content rules hold: messages and ``input.value``/``output.value`` are derived from the content
already on the span (captured, redacted and size-fitted by the content step), so nothing appears here
that would not appear in ``gen_ai.input.messages``; with capture off or content sent to events only,
only the content-free attributes are added. Opt-in and off the default path: the only cost of this
module to a user who did not ask is its absence from the steps.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmwatch import _semconv as sc

if TYPE_CHECKING:
    from llmwatch._core._call import LLMCall

# gen_ai.provider.name -> OpenInference's llm.provider and llm.system (where it defines one).
_PROVIDERS = {
    "openai": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "gcp.gemini": ("google", "vertexai"),
    "gcp.vertex_ai": ("google", "vertexai"),
    "gcp.gen_ai": ("google", "vertexai"),
    "aws.bedrock": ("aws", None),
    "azure.ai.openai": ("azure", "openai"),
    "azure.ai.inference": ("azure", None),
    "cohere": ("cohere", "cohere"),
    "mistral_ai": ("mistralai", "mistralai"),
    "x_ai": ("xai", None),
    "deepseek": ("deepseek", None),
}
_COPIED = (
    (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.OI_LLM_TOKEN_COUNT_CACHE_READ),
    (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, sc.OI_LLM_TOKEN_COUNT_CACHE_WRITE),
    (sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, sc.OI_LLM_TOKEN_COUNT_CACHE_WRITE),
    (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, sc.OI_LLM_TOKEN_COUNT_REASONING),
    (sc.LLMWATCH_COST_USD, sc.OI_LLM_COST_TOTAL),
    (sc.LLMWATCH_COST_INPUT_USD, sc.OI_LLM_COST_PROMPT),
    (sc.LLMWATCH_COST_OUTPUT_USD, sc.OI_LLM_COST_COMPLETION),
)


def openinference_step(call: LLMCall, attrs: dict[str, Any]) -> None:
    """The LLM span's OpenInference attributes, from what the earlier steps put in ``attrs``."""
    embeddings = call.handler.operation == sc.OP_EMBEDDINGS
    attrs[sc.OI_SPAN_KIND] = sc.OI_KIND_EMBEDDING if embeddings else sc.OI_KIND_LLM
    model = call.response_model or call.request_model
    attrs[sc.OI_EMBEDDING_MODEL_NAME if embeddings else sc.OI_LLM_MODEL_NAME] = model
    provider, system = _PROVIDERS.get(call.provider, (call.provider, None))
    attrs[sc.OI_LLM_PROVIDER] = provider
    if system is not None:
        attrs[sc.OI_LLM_SYSTEM] = system
    _tokens(attrs)
    for ours, theirs in _COPIED:
        if ours in attrs:
            attrs[theirs] = attrs[ours]
    prompt = call.attribution.prompt
    if prompt is not None and prompt.version is not None:
        attrs[sc.OI_PROMPT_TEMPLATE_VERSION] = str(prompt.version)
    _content(attrs)


def _tokens(attrs: dict[str, Any]) -> None:
    prompt = attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS)
    completion = attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    if prompt is not None:
        attrs[sc.OI_LLM_TOKEN_COUNT_PROMPT] = prompt
    if completion is not None:
        attrs[sc.OI_LLM_TOKEN_COUNT_COMPLETION] = completion
    if prompt is not None or completion is not None:
        attrs[sc.OI_LLM_TOKEN_COUNT_TOTAL] = (prompt or 0) + (completion or 0)


def _content(attrs: dict[str, Any]) -> None:
    """Messages as OpenInference flattens them, and input/output values (content on the span only)."""
    inputs = attrs.get(sc.GEN_AI_INPUT_MESSAGES)
    outputs = attrs.get(sc.GEN_AI_OUTPUT_MESSAGES)
    system = attrs.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS)
    if isinstance(inputs, str):
        attrs[sc.OI_INPUT_VALUE] = inputs
        attrs[sc.OI_INPUT_MIME_TYPE] = sc.OI_MIME_JSON
        history = _loads(inputs)
        if isinstance(system, str):  # instructions given apart from the history (Anthropic, Gemini)
            parts = _loads(system)
            history = [{"role": "system", "parts": parts}, *history] if isinstance(parts, list) else history
        _flatten(attrs, sc.OI_LLM_INPUT_MESSAGES, history)
    if isinstance(outputs, str):
        messages = _loads(outputs)
        if not messages:  # a failed call produced nothing: no "[]" as the output
            return
        text = _only_text(messages)
        attrs[sc.OI_OUTPUT_VALUE] = text if text is not None else outputs
        attrs[sc.OI_OUTPUT_MIME_TYPE] = sc.OI_MIME_TEXT if text is not None else sc.OI_MIME_JSON
        _flatten(attrs, sc.OI_LLM_OUTPUT_MESSAGES, messages)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # a content hook's redaction may leave text that is not JSON: no messages then
        return []


def _only_text(messages: Any) -> str | None:
    """The reply's text when it is one message of text parts (what Phoenix shows best), else None."""
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        return None
    parts = messages[0].get("parts") or []
    if not parts or any(not isinstance(p, dict) or p.get("type") != "text" for p in parts):
        return None
    return "".join(str(p.get("content", "")) for p in parts)


def _flatten(attrs: dict[str, Any], prefix: str, messages: Any) -> None:
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        base = f"{prefix}.{i}."
        attrs[base + sc.OI_MESSAGE_ROLE] = str(message.get("role", ""))
        texts: list[str] = []
        calls = 0
        for part in message.get("parts") or ():
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "tool_call":
                call_base = f"{base}{sc.OI_MESSAGE_TOOL_CALLS}.{calls}."
                calls += 1
                if part.get("id") is not None:
                    attrs[call_base + sc.OI_TOOL_CALL_ID] = str(part["id"])
                attrs[call_base + sc.OI_TOOL_CALL_FUNCTION_NAME] = str(part.get("name", ""))
                arguments = part.get("arguments")
                attrs[call_base + sc.OI_TOOL_CALL_FUNCTION_ARGUMENTS] = (
                    arguments if isinstance(arguments, str) else json.dumps(arguments)
                )
            elif kind in ("text", "reasoning") and part.get("content") is not None:
                texts.append(str(part["content"]))
            elif kind == "tool_call_response":
                response = part.get("response")
                texts.append(response if isinstance(response, str) else json.dumps(response))
        if texts:
            attrs[base + sc.OI_MESSAGE_CONTENT] = "\n".join(texts)
