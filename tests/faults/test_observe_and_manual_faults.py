"""``@llmwatch.observe`` (every function kind) and ``llmwatch.llm_call``: a fault inside llmwatch never
changes what the user's own code returns, yields or raises, and never leaves a context attached.

The user's function returns a unique object, yields unique objects, or raises one exception object;
the caller must get those very objects (``is``) whatever llmwatch's code does meanwhile.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Span as SdkSpan

import llmwatch
import llmwatch.testing
from faults._support import InjectedFault, boom, internal_error_places
from llmwatch import _attribution
from llmwatch._core import _runtime
from llmwatch._core._call import LLMCall
from llmwatch._core._runtime import Runtime
from llmwatch._export import _metrics
from llmwatch._instrument import _observe
from llmwatch._policy import _tokens


class UserError(Exception):
    """The user's own exception: must reach the caller as the same object."""


@dataclasses.dataclass
class Result:
    value: Any = None
    items: list[Any] = dataclasses.field(default_factory=list)
    error: BaseException | None = None


Program = Callable[[list[Any], Any, BaseException | None], Awaitable[Result]]


def _observed_sync(items: list[Any], value: Any, error: BaseException | None) -> Awaitable[Result]:
    @llmwatch.observe(capture_args=True)
    def handler(question: str) -> Any:
        if error is not None:
            raise error
        return value

    async def run() -> Result:
        try:
            return Result(handler("what is llmwatch?"))
        except UserError as exc:
            return Result(error=exc)

    return run()


def _observed_async(items: list[Any], value: Any, error: BaseException | None) -> Awaitable[Result]:
    @llmwatch.observe(capture_args=True)
    async def handler(question: str) -> Any:
        if error is not None:
            raise error
        return value

    async def run() -> Result:
        try:
            return Result(await handler("what is llmwatch?"))
        except UserError as exc:
            return Result(error=exc)

    return run()


def _observed_generator(items: list[Any], value: Any, error: BaseException | None) -> Awaitable[Result]:
    @llmwatch.observe(capture_args=True)
    def handler(question: str) -> Any:
        yield from items
        if error is not None:
            raise error

    async def run() -> Result:
        result = Result()
        try:
            for item in handler("what is llmwatch?"):
                result.items.append(item)
        except UserError as exc:
            result.error = exc
        return result

    return run()


def _observed_async_generator(items: list[Any], value: Any, error: BaseException | None) -> Awaitable[Result]:
    @llmwatch.observe(capture_args=True)
    async def handler(question: str) -> Any:
        for item in items:
            yield item
        if error is not None:
            raise error

    async def run() -> Result:
        result = Result()
        try:
            async for item in handler("what is llmwatch?"):
                result.items.append(item)
        except UserError as exc:
            result.error = exc
        return result

    return run()


def _manual_call(tokens: bool, use_async: bool) -> Program:
    def program(items: list[Any], value: Any, error: BaseException | None) -> Awaitable[Result]:
        def body(call: Any) -> Any:
            call.set_input([{"role": "user", "content": "what is llmwatch?"}])
            call.record_first_token()
            if error is not None:
                raise error
            counts = {"input_tokens": 12, "output_tokens": 5} if tokens else {}
            call.set_output("an observability library", response_model="llama-3-8b", **counts)
            return value

        async def run() -> Result:
            manager = llmwatch.llm_call(provider="vllm", model="llama-3-8b", server_address="gpu-1")
            try:
                if use_async:
                    async with manager as call:
                        return Result(body(call))
                with manager as call:
                    return Result(body(call))
            except UserError as exc:
                return Result(error=exc)

        return run()

    return program


PROGRAMS: dict[str, Program] = {
    "observe-sync": _observed_sync,
    "observe-async": _observed_async,
    "observe-generator": _observed_generator,
    "observe-async-generator": _observed_async_generator,
    "llm_call-with-tokens": _manual_call(tokens=True, use_async=False),
    "llm_call-counted-tokens": _manual_call(tokens=False, use_async=False),
    "llm_call-async-with": _manual_call(tokens=True, use_async=True),
}
OBSERVE = [name for name in PROGRAMS if name.startswith("observe")]
MANUAL = [name for name in PROGRAMS if name.startswith("llm_call")]


# --- the faults ---------------------------------------------------------------------------------------
def _break_tracer(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    monkeypatch.setattr(runtime.tracer, "start_span", boom)


def _break_attach(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    monkeypatch.setattr(_observe, "otel_context", types.SimpleNamespace(**{**vars(otel_context), "attach": boom}))


def _break_detach(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    def detach_then_fail(token: Any) -> None:
        otel_context.detach(token)  # really detached: a leak here would poison later tests
        raise InjectedFault("detach")

    broken = types.SimpleNamespace(**{**vars(otel_context), "detach": detach_then_fail})
    monkeypatch.setattr(_observe, "otel_context", broken)


def _patch(owner: Any, attribute: str) -> Callable[[pytest.MonkeyPatch, Runtime], None]:
    def inject(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
        monkeypatch.setattr(owner, attribute, boom)

    return inject


def _break_steps(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    def broken(call: LLMCall, attrs: dict[str, Any]) -> None:
        raise InjectedFault("pipeline step")

    monkeypatch.setattr(runtime.pipeline, "steps", tuple(broken for _ in runtime.pipeline.steps))


def _nothing(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[pytest.MonkeyPatch, Runtime], None]
    programs: list[str]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    keeps_span: bool = True  # the fault costs attributes, never the span


FAULTS = [
    Fault("tracer start_span", _break_tracer, [*OBSERVE, *MANUAL], keeps_span=False),
    Fault("attribution read", _patch(_attribution, "current"), [*OBSERVE, *MANUAL], keeps_span=False),
    Fault("context attach", _break_attach, OBSERVE),
    Fault("context detach", _break_detach, OBSERVE),
    Fault("span end", _patch(SdkSpan, "end"), [*OBSERVE, *MANUAL], keeps_span=False),
    Fault("span record_exception", _patch(SdkSpan, "record_exception"), [*OBSERVE, *MANUAL]),
    Fault("every pipeline step", _break_steps, MANUAL, settings={"capture_content": True}),
    Fault("metrics record_call", _patch(_metrics.Metrics, "record_call"), MANUAL),
    Fault("tokenizer", _patch(_tokens, "count_message_tokens"), ["llm_call-counted-tokens"]),
    Fault("redact hook", _nothing, [*OBSERVE, *MANUAL], settings={"capture_content": True, "redact": boom}),
]

# Known llmwatch bugs: (fault, program prefix) -> reason; strict xfails, so a fix shows up as a failure.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _marks(fault: Fault, program: str) -> list[pytest.MarkDecorator]:
    return [
        pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")
        for (name, prefix), reason in KNOWN_BUGS.items()
        if name == fault.name and program.startswith(prefix)
    ]


CASES = [
    pytest.param(
        fault,
        program,
        raises,
        id=f"{fault.name}-{program}-{'raises' if raises else 'returns'}",
        marks=_marks(fault, program),
    )
    for fault in FAULTS
    for program in fault.programs
    for raises in (False, True)
    # record_exception only runs when the user's code raised; the others run either way
    if raises or fault.name != "span record_exception"
    # llm_call's tokenizer runs only on a successful call (a failed one has no output to count)
    if not (raises and fault.name == "tokenizer")
]


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize(("fault", "program", "raises"), CASES)
async def test_internal_fault_never_changes_what_user_code_returns_yields_or_raises(
    fault: Fault, program: str, raises: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    counts = []
    with llmwatch.testing.capture(**fault.settings) as captured:
        fault.inject(monkeypatch, _runtime.CURRENT)
        for _ in range(2):
            items, value = [object(), object(), object()], object()
            error = UserError("the user's own failure") if raises else None
            before = trace.get_current_span()
            result = await PROGRAMS[program](items, value, error)
            assert trace.get_current_span() is before, "llmwatch left a span attached to the context"
            if error is not None:
                assert result.error is error
            else:
                assert result.error is None
                assert result.value is (None if "generator" in program else value)
            expected_items = items if "generator" in program else []
            assert len(result.items) == len(expected_items)
            assert all(got is sent for got, sent in zip(result.items, expected_items, strict=True))
            counts.append(llmwatch.stats()["internal_errors"])
        monkeypatch.undo()
    first, total = counts
    assert first >= 1, f"the fault at {fault.name} was never hit: nothing was tested"
    assert total == 2 * first
    places = internal_error_places(caplog.records)
    assert places and len(places) == len(set(places)), f"each place must be logged once: {places}"
    if fault.keeps_span:
        assert len(captured.spans) == 2  # the fault cost attributes, not the span
        stats = llmwatch.stats()
        assert stats["spans_started"] == stats["spans_ended"] == 2
