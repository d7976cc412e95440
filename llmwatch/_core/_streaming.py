"""The stream lifecycle: proxies that watch a provider stream and end its span exactly once.

The user gets a ``wrapt.ObjectProxy`` around the SDK's own stream object, so attributes
(``response``, ``close``, ...) and ``isinstance`` checks behave as before. We intercept only
iteration, ``close``, the ``with`` protocol and garbage collection:

- each chunk goes to ``LLMCall.record_chunk`` (guarded; it may ask to hide a usage chunk that
  llmwatch requested and the user did not);
- the span ends when the stream is exhausted (completed), raises (failed), is closed or leaves its
  ``with`` block early, or is garbage-collected unfinished (``llmwatch.stream.completed=false``).

No OTel context is attached across chunks: a context attached in one generator step and detached in
another breaks whenever the consumer moves between tasks or threads. The span was created with its
parent captured at request time, so ending it needs no current context.
"""

from __future__ import annotations

import inspect
import sys
from types import TracebackType
from typing import Any

import wrapt

from llmwatch._core import _post_response
from llmwatch._core._call import LLMCall, is_requested_usage_chunk
from llmwatch._health import record_internal_error


class _StreamBase(wrapt.ObjectProxy):  # type: ignore[type-arg]
    _self_call: LLMCall

    def __init__(self, wrapped: Any, call: LLMCall) -> None:
        super().__init__(wrapped)
        self._self_call = call

    def _self_end(self, completed: bool) -> None:
        try:
            self._self_call.end_stream(completed)
        except Exception as exc:  # pragma: no cover - end_stream guards itself
            record_internal_error("stream end", exc)

    def _self_fail(self, exc: BaseException) -> None:
        try:
            self._self_call.fail(exc)
        except Exception as internal:  # pragma: no cover - fail guards itself
            record_internal_error("stream fail", internal)

    def __del__(self) -> None:
        # An abandoned stream: end its span with what arrived so far. Not while the interpreter is
        # tearing down: exporters are shut (llmwatch's atexit ran) and imports no longer work.
        if sys.is_finalizing():
            return
        call = getattr(self, "_self_call", None)
        if call is not None and not call.ended:
            self._self_end(False)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


def _hidden(call: LLMCall, chunk: Any) -> bool:
    """Record a chunk; True when it is the usage chunk llmwatch asked for (the user never sees it)."""
    try:
        return call.record_chunk(chunk)
    except Exception as exc:  # record_chunk guards itself; this is the last line, for the caller
        record_internal_error("stream chunk", exc)
        return call.hide_usage_chunk and is_requested_usage_chunk(chunk)


class StreamProxy(_StreamBase):
    """A synchronous SDK stream (``openai.Stream``, ``anthropic.Stream``, botocore's ``EventStream``).

    Most SDK streams are their own iterators. botocore's ``EventStream`` is only iterable (its
    ``__iter__`` is a generator over one shared event generator): the proxy then steps through the
    iterator it gives, made on the first ``next``, so the user iterates the proxy exactly as before."""

    _self_iterator: Any

    def __init__(self, wrapped: Any, call: LLMCall) -> None:
        super().__init__(wrapped, call)
        self._self_iterator = wrapped if hasattr(type(wrapped), "__next__") else None

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        call = self._self_call
        iterator = self._self_iterator
        if iterator is None:
            iterator = self._self_iterator = iter(self.__wrapped__)
        while True:
            try:
                chunk = iterator.__next__()
            except StopIteration:
                self._self_end(True)
                raise
            except BaseException as exc:
                self._self_fail(exc)
                raise
            if not _hidden(call, chunk):
                return chunk

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end(False)

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self._self_fail(exc)
            else:
                self._self_end(False)


class AsyncStreamProxy(_StreamBase):
    """An asynchronous SDK stream (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_end(True)
                raise
            except BaseException as exc:
                self._self_fail(exc)
                raise
            if not _hidden(call, chunk):
                return chunk

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end(False)

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self._self_fail(exc)
            else:
                self._self_end(False)


class RawResponseProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]
    """``with_raw_response`` / ``with_streaming_response``: the span ends when the body is parsed.

    Proxying the raw response (not the parsed object) keeps ``headers``, ``http_response`` and
    ``parse()`` working as the SDK documents. ``parse()`` returns the parsed result (or a stream
    proxy over it); a raw response never parsed ends its span when it is collected.
    """

    _self_call: LLMCall
    _self_is_async: bool
    _self_handed_off: bool

    def __init__(self, wrapped: Any, call: LLMCall, is_async: bool) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_is_async = is_async
        # True once parse() gave the call to what it returned (a stream proxy ends it from then on):
        # ``create(...).parse()`` in one expression drops this proxy at once, mid-stream.
        self._self_handed_off = False

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        call = self._self_call
        watch = _post_response.watch()  # the SDK's post-parser may reject the body (see _post_response.py)
        try:
            parsed = self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            _post_response.fail(call, exc, watch)  # the body arrived: end with the error and its usage
            raise
        _post_response.close(watch)
        # Async clients differ: with_streaming_response's parse() is a coroutine, but with_raw_response's
        # LegacyAPIResponse.parse() is synchronous even on AsyncOpenAI. Await only what is awaitable.
        if inspect.isawaitable(parsed):
            return self._self_finish_async(parsed)
        wrapped = wrap_parsed(call, parsed, is_async=self._self_is_async)
        self._self_handed_off = wrapped is not None
        return parsed if wrapped is None else wrapped

    async def _self_finish_async(self, pending: Any) -> Any:
        call = self._self_call
        watch = _post_response.watch()
        try:
            parsed = await pending
        except BaseException as exc:
            _post_response.fail(call, exc, watch)  # the body arrived: end with the error and its usage
            raise
        _post_response.close(watch)
        wrapped = wrap_parsed(call, parsed, is_async=True)
        self._self_handed_off = wrapped is not None
        return parsed if wrapped is None else wrapped

    def __del__(self) -> None:
        if sys.is_finalizing() or getattr(self, "_self_handed_off", False):
            return
        call = getattr(self, "_self_call", None)
        if call is not None and not call.ended:
            call.abandon()


def end_unfinished_stream(stream: Any) -> None:
    """End the span of one of our stream proxies if it is still open (``completed=false``)."""
    if isinstance(stream, _StreamBase) and not stream._self_call.ended:
        stream._self_end(False)


def wrap_parsed(call: LLMCall, parsed: Any, *, is_async: bool) -> Any:
    """End the call with a parsed response, or return a proxy that follows a parsed stream."""
    try:
        if call.stream:
            return AsyncStreamProxy(parsed, call) if is_async else StreamProxy(parsed, call)
        call.finish(parsed)
    except Exception as exc:
        record_internal_error("parse response", exc)
    return None
