"""Amazon Bedrock through boto3: ``converse``, ``converse_stream``, ``invoke_model`` and
``invoke_model_with_response_stream`` of ``bedrock-runtime`` clients (``gen_ai.provider.name=aws.bedrock``).

**The hook.** boto3 clients have no SDK class per operation to wrap: botocore generates a client class
per service whenever a client is created (``botocore.client.BedrockRuntime``, a new class each time),
whose methods all call ``BaseClient._make_api_call(operation_name, api_params)``, positionally (every
botocore 1.x since the Converse API appeared, 1.34.116, through 1.44). llmwatch wraps that one method,
at class level, once: it serves every client, made before or after instrumentation. For any other
operation of any service the wrapper returns at once: an S3 or STS call pays a length check and a dict
lookup, and gains no exception path (nothing of ours can raise before botocore runs).

Rejected: botocore's event system (``before-call`` / ``after-call`` handlers). Handlers live on each
client's own emitter, so llmwatch would have to hook client creation as well; ``after-call`` sees the
parsed response but cannot hand the caller anything in its place (the stream proxy that ends the span
when the caller stops reading); and a span opened in one handler and closed in another would attach
its context in one callback and detach it in the other (the "Failed to detach context" bug). Budget
refusals, kill switches, the span's context around the HTTP request: a wrapper does all of it through
the one lifecycle every SDK shares (``_core/_lifecycle.run_sync``), with no second code path.

**What each call hands back** (the caller gets the very response dict botocore built):

- ``converse``: the span ends at once.
- ``converse_stream``: ``response["stream"]`` (botocore's ``EventStream``) becomes llmwatch's stream
  proxy; the span ends on the ``metadata`` event, or when the stream is closed, abandoned or collected.
- ``invoke_model``: ``response["body"]`` is a ``StreamingBody`` the caller reads, and llmwatch must
  not read it for them. It stays the very same object; its raw stream (the urllib3 response it reads
  from) is wrapped in a transparent reader that keeps the bytes as they pass (``_bedrock_reader``).
  The span ends when the body has been read whole, or when it is closed or collected (usage then from
  the ``x-amzn-bedrock-*-token-count`` headers). Reading the body here and putting a new
  ``StreamingBody`` over the same bytes (what other instrumentations do) would hand the caller another
  object, move the read and its errors into ``invoke_model`` and break ``set_socket_timeout``.
  Embeddings end at once: the headers carry all their usage.
- ``invoke_model_with_response_stream``: ``response["body"]`` (an ``EventStream`` of ``chunk`` events)
  becomes the stream proxy; the span ends at the chunk carrying ``amazon-bedrock-invocationMetrics``
  (the model's last).

Not covered: aiobotocore (its client overrides ``_make_api_call`` with a coroutine), the other
bedrock-runtime operations (``apply_guardrail``, ``count_tokens``, ``start_async_invoke``,
``invoke_model_with_bidirectional_stream``), ``bedrock-agent-runtime``. Nothing from the request but
the model id and the parameters named reaches a span; never a header, a credential or a signature.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from llmwatch import _semconv as sc
from llmwatch._config import Settings
from llmwatch._core import _lifecycle
from llmwatch._core._call import LLMCall
from llmwatch._instrument._base import Prepare, begin_call
from llmwatch._instrument._bedrock_converse import CONVERSE, CONVERSE_STREAM, request_attributes

SERVICE = "bedrock-runtime"


def _invoke_prepare(stream: bool) -> Prepare:
    def prepare(instance: Any, params: Mapping[str, Any], settings: Settings) -> Any:
        bodies = _bodies()
        body = bodies.parse_body(params.get("body"), params.get("contentType"))
        handler = bodies.handler_for(params.get("modelId"), body)
        attrs = request_attributes(instance, params, stream)
        if handler.operation != sc.OP_EMBEDDINGS:
            attrs[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_TEXT
        handler.put_attributes(attrs)
        return handler, attrs, dict(params), stream, False

    return prepare


def _follow_stream(key: str) -> _lifecycle.Follow:
    """The stream sits at ``response[key]``: the caller finds llmwatch's proxy there instead."""

    def follow(call: LLMCall, response: Any) -> None:
        stream = response.get(key) if type(response) is dict else None
        if stream is None:  # a stubbed or unexpected reply: nothing to follow
            call.abandon()
            return
        metadata = response.get("ResponseMetadata")
        if type(metadata) is dict:
            call.response_id = metadata.get("RequestId")  # an Anthropic body's message id replaces it
        response[key] = _lifecycle.stream_proxy(call, stream, is_async=False)

    return follow


def _follow_body(call: LLMCall, response: Any) -> None:
    if type(response) is not dict:
        call.abandon()
        return
    _reader().watch_body(call, response)


class _Operation:
    __slots__ = ("follow", "prepare")

    def __init__(self, prepare: Prepare, follow: _lifecycle.Follow | None) -> None:
        self.prepare = prepare
        self.follow = follow


# The operations traced, by botocore's operation name; every other one passes straight through.
OPERATIONS = {
    "Converse": _Operation(CONVERSE.prepare, None),
    "ConverseStream": _Operation(CONVERSE_STREAM.prepare, _follow_stream("stream")),
    "InvokeModel": _Operation(_invoke_prepare(stream=False), _follow_body),
    "InvokeModelWithResponseStream": _Operation(_invoke_prepare(stream=True), _follow_stream("body")),
}


def _is_runtime(client: Any) -> bool:
    try:
        return bool(client.meta.service_model.service_name == SERVICE)
    except Exception:  # not a client as botocore makes them: not ours to trace
        return False


def _make_api_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    name = args[0] if len(args) == 2 else None
    operation = OPERATIONS.get(name) if type(name) is str else None
    if operation is None or type(args[1]) is not dict or not _is_runtime(instance):
        return wrapped(*args, **kwargs)
    call, _ = begin_call(operation.prepare, instance, args[1], client=instance)
    if call is None:
        return wrapped(*args, **kwargs)
    if call.rollout is not None:  # Converse in a rollout: the arm's parameters (its modelId, say) are sent
        args = (args[0], dict(call.request))
    return _lifecycle.run_sync(call, wrapped, args, kwargs, follow=operation.follow)


_bodies_module: ModuleType | None = None
_reader_module: ModuleType | None = None


def _bodies() -> ModuleType:
    # The InvokeModel families, imported on the first InvokeModel call; kept once found.
    global _bodies_module
    if _bodies_module is None:
        from llmwatch._instrument import _bedrock_bodies

        _bodies_module = _bedrock_bodies
    return _bodies_module


def _reader() -> ModuleType:
    global _reader_module
    if _reader_module is None:
        from llmwatch._instrument import _bedrock_reader

        _reader_module = _bedrock_reader
    return _reader_module


TARGETS = (("botocore.client", "BaseClient", "_make_api_call", None, False),)
CLIENT_CLASSES = (("botocore.client", "BaseClient"),)
SDK_MODULE = "botocore"
KNOWN_MAJOR_VERSIONS = (1,)


def make_wrapper(handler: Any, is_async: bool) -> Any:
    return _make_api_call


def check_client(client: Any) -> None:
    """``llmwatch.instrument(client)`` takes a bedrock-runtime client: any other has no LLM call to trace."""
    module = sys.modules.get("botocore.client")
    base = getattr(module, "BaseClient", None)
    if not isinstance(base, type) or not isinstance(client, base):
        raise TypeError(
            f"llmwatch.instrument(): {type(client).__module__}.{type(client).__qualname__} is not a boto3 "
            "client; pass a bedrock-runtime client: boto3.client('bedrock-runtime')."
        )
    if not _is_runtime(client):
        service = getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", "?")
        raise TypeError(
            f"llmwatch.instrument(): a boto3 {service!r} client makes no LLM calls llmwatch traces; "
            "pass a bedrock-runtime client: boto3.client('bedrock-runtime')."
        )
