"""OpenAI Embeddings (``embeddings.create``): input tokens only, no message content to capture."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core._call import LLMCall
from llmwatch._core._messages import RequestContent
from llmwatch._instrument._endpoints import endpoint_attributes
from llmwatch._instrument._fields import field
from llmwatch._instrument._openai_request import PROVIDER


class Embeddings:
    """``embeddings.create``: input tokens only."""

    provider = PROVIDER
    operation = sc.OP_EMBEDDINGS
    parses = False

    def prepare(
        self, instance: Any, kwargs: Mapping[str, Any], settings: Settings
    ) -> tuple[Embeddings, dict[str, Any], dict[str, Any], bool, bool]:
        attrs: dict[str, Any] = {}
        endpoint_attributes(getattr(instance, "_client", None), attrs, settings, None)
        encoding = kwargs.get("encoding_format")
        if isinstance(encoding, str):
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [encoding]
        return self, attrs, dict(kwargs), False, False

    def prompt_parts(self, request: Mapping[str, Any]) -> list[str]:
        value = request.get("input")
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)):
            return [item if isinstance(item, str) else str(item) for item in value]
        return []

    def count_input_tokens(self, call: LLMCall) -> tuple[int, str]:
        from llmwatch._policy._tokens import count_texts_tokens

        return count_texts_tokens(call.model, self.prompt_parts(call.request))

    def on_response(self, call: LLMCall, response: Any) -> None:
        if response is None:
            return
        call.response_model = field(response, "model")
        usage = field(response, "usage")
        if usage is not None:
            call.input_tokens = field(usage, "prompt_tokens") or 0

    def on_chunk(self, call: LLMCall, chunk: Any) -> bool:
        return False

    def request_content(self, request: Mapping[str, Any]) -> RequestContent | None:
        return None  # vectors out, inputs in: neither is recorded as messages
