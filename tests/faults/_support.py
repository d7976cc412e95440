"""What the fault-injection tests share: every instrumented call kind, run the same way.

A *call kind* is one way a user calls an SDK through llmwatch (OpenAI chat, streamed or not, sync or
async; Responses; embeddings; Anthropic ``messages.create`` with and without ``stream=True``; the
``messages.stream(...)`` helper). Each kind runs against a plain client (never instrumented: the
baseline, what the user gets without llmwatch) and an instrumented one, and gives an
:class:`Outcome` that can be compared.

:class:`SdkRecorder` sits inside the SDK, at the client's ``post`` method, below llmwatch's wrapper:
it sees the very object (or exception) the SDK produced, so a test can check that the caller got
that same object back (``is``), not a copy or a re-raised lookalike.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import anthropic._base_client
import openai
import openai._base_client
import pytest

OPENAI_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
ANTHROPIC_MODEL = "claude-haiku-4-5"
PROMPT = "What is the capital of France?"

# Fields that differ between two identical requests (ids, timestamps): ignored when comparing.
VOLATILE_KEYS = frozenset(
    {"id", "created", "created_at", "completed_at", "request_id", "call_id", "_request_id", "item_id"}
)


class InjectedFault(Exception):
    """Raised by the fault tests inside llmwatch's own code; must never reach the caller."""


def boom(*args: Any, **kwargs: Any) -> Any:
    raise InjectedFault("fault injected by tests/faults")


def normalize(value: Any) -> Any:
    """A plain, comparable form of an SDK object (pydantic models, lists, dicts) without volatile ids."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", warnings=False)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """The SDK object inside llmwatch's transparent stream proxy (or the value itself)."""
    return getattr(value, "__wrapped__", value)


# --- the SDK-side recorder --------------------------------------------------------------------------
class SdkRecorder:
    """Records what the SDK's ``post`` returned or raised, below llmwatch's wrapper."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def clear(self) -> None:
        self.results.clear()
        self.errors.clear()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (openai._base_client, anthropic._base_client):
            sync_original = module.SyncAPIClient.post
            async_original = module.AsyncAPIClient.post
            monkeypatch.setattr(module.SyncAPIClient, "post", self._sync(sync_original))
            monkeypatch.setattr(module.AsyncAPIClient, "post", self._async(async_original))

    def _sync(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def post(client: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                result = original(client, *args, **kwargs)
            except BaseException as exc:
                self.errors.append(exc)
                raise
            self.results.append(result)
            return result

        return post

    def _async(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def post(client: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                result = await original(client, *args, **kwargs)
            except BaseException as exc:
                self.errors.append(exc)
                raise
            self.results.append(result)
            return result

        return post


# --- clients ---------------------------------------------------------------------------------------
class Clients:
    """Instrumented and plain clients of both SDKs, sync and async, pointed at the loopback server.

    Made on first use (an SDK client costs ~15 ms to build); ``instrument`` marks the traced ones.
    """

    def __init__(self, openai_base_url: str, anthropic_base_url: str, instrument: Callable[[Any], Any]) -> None:
        self._urls = (openai_base_url, anthropic_base_url)
        self._instrument = instrument
        self.made: dict[tuple[str, bool, bool], Any] = {}

    def get(self, provider: str, is_async: bool, *, plain: bool) -> Any:
        key = (provider, is_async, plain)
        client = self.made.get(key)
        if client is None:
            client = self.made[key] = make_client(provider, is_async, *self._urls)
        if not plain:
            self._instrument(client)  # idempotent; hooks may have been removed since the client was made
        return client

    def close_sync(self) -> None:
        for (_, is_async, _), client in self.made.items():
            if not is_async:
                client.close()

    async def close_async(self) -> None:
        for (_, is_async, _), client in self.made.items():
            if is_async:
                await client.close()


def make_client(provider: str, is_async: bool, openai_base_url: str, anthropic_base_url: str) -> Any:
    if provider == "openai":
        cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(api_key="sk-test-key-0123456789", base_url=openai_base_url, max_retries=0)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(api_key="sk-ant-test-0123456789", base_url=anthropic_base_url, max_retries=0)


# --- outcomes --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    """What the caller saw: the returned object, the items it iterated (streams), or the exception."""

    value: Any = None
    items: list[Any] | None = None
    error: BaseException | None = None

    def comparable(self) -> Any:
        if self.error is not None:
            error = self.error
            return ("raised", type(error), getattr(error, "status_code", None), normalize(getattr(error, "body", None)))
        if self.items is not None:
            return ("stream", normalize(self.items))
        return ("returned", type(self.value), normalize(self.value))


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _drain(stream: Any, is_async: bool) -> list[Any]:
    return [item async for item in stream] if is_async else list(stream)


Runner = Callable[[Any, bool, dict[str, str]], Awaitable[Outcome]]


@dataclasses.dataclass(frozen=True)
class CallKind:
    name: str
    provider: str
    is_async: bool
    stream: bool
    run: Runner
    helper: bool = False  # Anthropic ``messages.stream(...)``: the user holds the SDK's MessageStream

    def __str__(self) -> str:
        return self.name


def _openai_chat(stream: bool) -> Runner:
    async def run(client: Any, is_async: bool, headers: dict[str, str]) -> Outcome:
        messages = [{"role": "user", "content": PROMPT}]
        kwargs: dict[str, Any] = {"model": OPENAI_MODEL, "messages": messages, "extra_headers": headers}
        if stream:
            kwargs["stream"] = True
        value = await _resolve(client.chat.completions.create(**kwargs))
        return Outcome(value, await _drain(value, is_async) if stream else None)

    return run


def _openai_responses(stream: bool) -> Runner:
    async def run(client: Any, is_async: bool, headers: dict[str, str]) -> Outcome:
        kwargs: dict[str, Any] = {"model": OPENAI_MODEL, "input": PROMPT, "extra_headers": headers}
        if stream:
            kwargs["stream"] = True
        value = await _resolve(client.responses.create(**kwargs))
        return Outcome(value, await _drain(value, is_async) if stream else None)

    return run


async def _openai_embeddings(client: Any, is_async: bool, headers: dict[str, str]) -> Outcome:
    value = await _resolve(client.embeddings.create(model=EMBEDDING_MODEL, input=PROMPT, extra_headers=headers))
    return Outcome(value)


def _anthropic_create(stream: bool) -> Runner:
    async def run(client: Any, is_async: bool, headers: dict[str, str]) -> Outcome:
        kwargs: dict[str, Any] = {
            "model": ANTHROPIC_MODEL,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": PROMPT}],
            "extra_headers": headers,
        }
        if stream:
            kwargs["stream"] = True
        value = await _resolve(client.messages.create(**kwargs))
        return Outcome(value, await _drain(value, is_async) if stream else None)

    return run


async def _anthropic_helper(client: Any, is_async: bool, headers: dict[str, str]) -> Outcome:
    manager = client.messages.stream(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers=headers,
    )
    if is_async:
        async with manager as stream:
            events = [event async for event in stream]
            final = await stream.get_final_message()
    else:
        with manager as stream:
            events = list(stream)
            final = stream.get_final_message()
    return Outcome(stream, [*events, final])


def has_responses_api() -> bool:
    """The Responses API arrived in openai 1.66; older SDKs (pyproject allows >= 1.40) lack it."""
    return importlib.util.find_spec("openai.resources.responses") is not None


def anthropic_helper_bypasses_llmwatch() -> bool:
    """Older anthropic SDKs (0.40 among them) build ``MessageStream`` from the raw stream's response,
    so the ``messages.stream()`` helper never iterates llmwatch's stream proxy."""
    from anthropic.lib.streaming import MessageStream

    return "cast_to" in inspect.signature(MessageStream.__init__).parameters


def sdk_http_module(sdk: Any) -> Any:
    """The httpx flavour an SDK builds on: ``httpx2`` for recent SDKs, ``httpx`` for older ones."""
    base = sdk._base_client
    return getattr(base, "httpx2", None) or base.httpx


def _kinds() -> list[CallKind]:
    kinds = []
    for is_async in (False, True):
        flavour = "async" if is_async else "sync"
        kinds += [
            CallKind(f"openai-chat-{flavour}", "openai", is_async, False, _openai_chat(False)),
            CallKind(f"openai-chat-stream-{flavour}", "openai", is_async, True, _openai_chat(True)),
            CallKind(f"openai-responses-{flavour}", "openai", is_async, False, _openai_responses(False)),
            CallKind(f"openai-responses-stream-{flavour}", "openai", is_async, True, _openai_responses(True)),
            CallKind(f"openai-embeddings-{flavour}", "openai", is_async, False, _openai_embeddings),
            CallKind(f"anthropic-messages-{flavour}", "anthropic", is_async, False, _anthropic_create(False)),
            CallKind(f"anthropic-messages-stream-{flavour}", "anthropic", is_async, True, _anthropic_create(True)),
            CallKind(f"anthropic-stream-helper-{flavour}", "anthropic", is_async, True, _anthropic_helper, True),
        ]
    if not has_responses_api():
        kinds = [kind for kind in kinds if "responses" not in kind.name]
    return kinds


CALL_KINDS = _kinds()


async def perform(kind: CallKind, clients: Clients, *, plain: bool, headers: dict[str, str] | None = None) -> Outcome:
    client = clients.get(kind.provider, kind.is_async, plain=plain)
    try:
        return await kind.run(client, kind.is_async, dict(headers or {}))
    except Exception as exc:
        return Outcome(error=exc)


def assert_same_as_the_sdk_gave(outcome: Outcome, kind: CallKind, recorder: SdkRecorder) -> None:
    """The caller got the SDK's own object (or exception), not a copy."""
    if outcome.error is not None:
        assert recorder.errors, f"the caller got {outcome.error!r}, which the SDK never raised"
        assert outcome.error is recorder.errors[-1]
        return
    if kind.helper:
        assert type(outcome.value).__name__ in {"MessageStream", "AsyncMessageStream"}
        return
    assert unwrap(outcome.value) is recorder.results[-1]


# --- log records ------------------------------------------------------------------------------------
def internal_error_places(records: list[Any]) -> list[str]:
    """The ``place`` of every "llmwatch internal error in <place>" warning, one entry per record."""
    return [
        str(record.args[0])
        for record in records
        if record.name == "llmwatch" and record.msg.startswith("llmwatch internal error in")
    ]
