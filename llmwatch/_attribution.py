"""Who and what a call is for: user, feature, session, free-form tags and the prompt template.

One ``ContextVar`` holds one immutable :class:`Attribution`. Entering ``llmwatch.attributes(...)`` or
``llmwatch.prompt(...)`` sets a new, merged value and resetting the token restores the old one, so
attribution follows the code's structure: it crosses ``await``, is inherited by asyncio tasks, and
reaches threads started under ``contextvars.copy_context().run``. The span attributes a value implies
are computed once when it is created, so the hot path applies them with one ``dict.update``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from random import getrandbits as _getrandbits  # reseeded in forked children
from types import MappingProxyType, TracebackType
from typing import Any, Final, TypeVar, cast

from llmwatch import _semconv as sc
from llmwatch._text import clean, clean_value
from llmwatch._wrapping import ContextHooks, wrap_function

F = TypeVar("F", bound=Callable[..., Any])

AttributeValue = str | bool | int | float


class PromptInfo:
    """A prompt template in use: name, version and the variables it was rendered with."""

    __slots__ = ("name", "variables", "version")

    def __init__(self, name: str, version: str | None, variables: Mapping[str, Any] | None) -> None:
        self.name = clean(name)
        self.version = _clean_optional(version)
        self.variables = MappingProxyType(dict(variables or {}))


_ROLLUP_LOCK: Final = threading.Lock()  # every rollup's counters: held for a few additions


class Rollup:
    """What the LLM calls beneath one observe span used and cost, in this process.

    Each ``observe`` span pushes one onto the attribution; a call adds its figures to every rollup of
    the attribution it started under (its ancestors, once each). The context carries them across
    ``await``, asyncio tasks and threads started with a copied context, so a call on another thread
    still counts once. Cost is kept in integer picodollars: concurrent sums are exact in any order.
    The lock is the counters' own, one for all rollups (a span does not pay to allocate one): taken
    for a few additions after a call, never before one.
    """

    __slots__ = (
        "cost_pico",
        "input_tokens",
        "llm_calls",
        "output_tokens",
        "provider",
        "run_id",
        "unpriced_calls",
    )

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id  # set on the outermost rollup only: the run's id
        self.cost_pico = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.llm_calls = 0
        self.unpriced_calls = 0
        # The provider of the calls beneath, while they all share one ("" once they do not): an agent
        # span names it (gen_ai.provider.name is required on invoke_agent spans).
        self.provider: str | None = None

    def add(self, cost_pico: int | None, input_tokens: int, output_tokens: int, provider: str) -> None:
        with _ROLLUP_LOCK:
            self.llm_calls += 1
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            if cost_pico is None:
                self.unpriced_calls += 1
            else:
                self.cost_pico += cost_pico
            if self.provider is None:
                self.provider = provider
            elif self.provider != provider:
                self.provider = ""

    def span_attributes(self) -> dict[str, AttributeValue]:
        """The totals to set at the span's end: the four when a call was counted (the unpriced count
        only when there is one), none without a call (the span started with ``llm_calls=0``, see
        :func:`open_rollup`: a span with no call beneath pays nothing at its end)."""
        with _ROLLUP_LOCK:
            if not self.llm_calls:
                return {}
            attrs: dict[str, AttributeValue] = {
                sc.LLMWATCH_ROLLUP_COST_USD: self.cost_pico / PICO,
                sc.LLMWATCH_ROLLUP_INPUT_TOKENS: self.input_tokens,
                sc.LLMWATCH_ROLLUP_OUTPUT_TOKENS: self.output_tokens,
                sc.LLMWATCH_ROLLUP_LLM_CALLS: self.llm_calls,
            }
            if self.unpriced_calls:
                attrs[sc.LLMWATCH_ROLLUP_UNPRICED_CALLS] = self.unpriced_calls
            return attrs


def open_rollup(outer: Attribution, start_attributes: dict[str, Any]) -> Rollup:
    """The rollup of an observe span opening under ``outer``, and its start attributes (written into
    ``start_attributes``): ``llmwatch.rollup.llm_calls=0``, replaced at the end when a call ran
    beneath, and, on the outermost span, the new run's id (``llmwatch.run.id``).

    The run id is a random 64-bit id of our own, known before the span starts, so it is set with the
    span's other start attributes instead of costing every run a second attribute write at its end."""
    start_attributes[sc.LLMWATCH_ROLLUP_LLM_CALLS] = 0
    if outer.rollups:
        return Rollup()
    # 16 hex digits; to_bytes().hex() is a third of the cost of format(..., "016x"), and runs per run.
    start_attributes[sc.LLMWATCH_RUN_ID] = run_id = _getrandbits(64).to_bytes(8, "big").hex()
    return Rollup(run_id)


PICO: Final = 1_000_000_000_000  # picodollars per dollar


class Attribution:
    """Immutable attribution of the current context. ``span_attributes`` is precomputed.

    ``rollups``: the rollups of the observe spans around this point, outermost (the run) first;
    ``agent``: the innermost agent's name."""

    __slots__ = ("agent", "feature", "prompt", "rollups", "session", "span_attributes", "tags", "user")

    def __init__(
        self,
        user: str | None = None,
        feature: str | None = None,
        session: str | None = None,
        tags: Mapping[str, AttributeValue] | None = None,
        prompt: PromptInfo | None = None,
    ) -> None:
        # Cleaned here, once per value: these strings reach every span and metric point below.
        self.user = _clean_optional(user)
        self.feature = _clean_optional(feature)
        self.session = _clean_optional(session)
        self.tags: Mapping[str, AttributeValue] = MappingProxyType(
            {clean(str(key)): clean_value(value) for key, value in (tags or {}).items()}
        )
        self.prompt = prompt
        self.rollups: tuple[Rollup, ...] = ()
        self.agent: str | None = None
        self.span_attributes: Mapping[str, AttributeValue] = MappingProxyType(self._span_attributes())

    def _span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {}
        if self.user is not None:
            attrs[sc.LLMWATCH_USER] = self.user
            attrs[sc.USER_ID] = self.user
        if self.feature is not None:
            attrs[sc.LLMWATCH_FEATURE] = self.feature
        if self.session is not None:
            attrs[sc.LLMWATCH_SESSION] = self.session
            attrs[sc.SESSION_ID] = self.session
            attrs[sc.GEN_AI_CONVERSATION_ID] = self.session
        for key, value in self.tags.items():
            attrs[sc.LLMWATCH_TAG_PREFIX + key] = value
        if self.prompt is not None:
            attrs[sc.LLMWATCH_PROMPT_NAME] = self.prompt.name
            attrs[sc.GEN_AI_PROMPT_NAME] = self.prompt.name  # the registry's (no version, no variables)
            if self.prompt.version is not None:
                attrs[sc.LLMWATCH_PROMPT_VERSION] = self.prompt.version
        return attrs

    def merged(
        self,
        user: str | None = None,
        feature: str | None = None,
        session: str | None = None,
        tags: Mapping[str, AttributeValue] | None = None,
        prompt: PromptInfo | None = None,
    ) -> Attribution:
        """A new value: given fields override, tags are merged (inner tags win); the run stays."""
        value = Attribution(
            user=self.user if user is None else user,
            feature=self.feature if feature is None else feature,
            session=self.session if session is None else session,
            tags={**self.tags, **(tags or {})},
            prompt=self.prompt if prompt is None else prompt,
        )
        if self.rollups or self.agent is not None:
            return value.within(self.rollups, self.agent)
        return value

    @property
    def run(self) -> Rollup | None:
        """The outermost observe span's rollup: the run this point belongs to (None outside any)."""
        return self.rollups[0] if self.rollups else None

    def within(self, rollups: tuple[Rollup, ...], agent: str | None) -> Attribution:
        """This attribution inside an observe span: its rollups and agent, the rest as it is (no re-cleaning)."""
        value = object.__new__(Attribution)
        value.user, value.feature, value.session = self.user, self.feature, self.session
        value.tags, value.prompt = self.tags, self.prompt
        value.rollups, value.agent = rollups, agent
        if agent == self.agent and self.rollups and rollups[0] is self.rollups[0]:
            value.span_attributes = self.span_attributes  # same run, same agent: nothing to add
            return value
        attrs = dict(self.span_attributes)
        run = rollups[0] if rollups else None
        if run is not None and run.run_id is not None:
            attrs[sc.LLMWATCH_RUN_ID] = run.run_id
        if agent is not None:
            attrs[sc.LLMWATCH_AGENT_NAME] = agent
        value.span_attributes = MappingProxyType(attrs)
        return value


def _clean_optional(value: str | None) -> str | None:
    return clean(value) if type(value) is str else value


EMPTY = Attribution()
_CURRENT: ContextVar[Attribution] = ContextVar("llmwatch_attribution", default=EMPTY)


# The hot path's one read and one write: the ContextVar's own methods (no Python frame of ours).
current: Final[Callable[[], Attribution]] = _CURRENT.get
set_current: Final[Callable[[Attribution], Token[Attribution]]] = _CURRENT.set


class _ScopedAttribution:
    """Context manager and decorator that sets attribution for a block or a function.

    Each use (each ``with``, each decorated call) pushes its own token, so one object can be reused,
    nested and shared between tasks safely.
    """

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        # The tokens of this object's open ``with`` blocks, per context: tasks sharing one object each
        # see only their own, so they may leave in any order (a plain list would hand one task
        # another's token, which ``ContextVar.reset`` refuses).
        self._open: ContextVar[tuple[Token[Attribution], ...]] = ContextVar("llmwatch.attributes.open", default=())

    def _push(self) -> Token[Attribution]:
        return _CURRENT.set(_CURRENT.get().merged(**self._fields))

    def __enter__(self) -> Attribution:
        token = self._push()
        self._open.set((*self._open.get(), token))
        return _CURRENT.get()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        *rest, token = self._open.get()
        self._open.set(tuple(rest))
        _CURRENT.reset(token)

    async def __aenter__(self) -> Attribution:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        return cast(F, wrap_function(fn, ContextHooks(self._push, _CURRENT.reset)))


def attributes(
    *,
    user: str | None = None,
    feature: str | None = None,
    session: str | None = None,
    **tags: AttributeValue,
) -> _ScopedAttribution:
    """Attribute every LLM span and metric below this point to a user, feature and session.

    Use as ``with llmwatch.attributes(user="u-42", feature="search"):`` or as a decorator. Nested
    uses merge: inner values win, tags accumulate. Extra keyword arguments become
    ``llmwatch.tag.<name>`` span attributes. Threads do not inherit context by themselves: submit work
    with ``contextvars.copy_context().run`` (see docs/attribution.md).
    """
    for key, value in tags.items():
        if not isinstance(value, (str, bool, int, float)):
            raise TypeError(f"llmwatch.attributes(): tag {key!r} must be str, bool, int or float")
    return _ScopedAttribution(user=user, feature=feature, session=session, tags=tags)


def prompt(
    name: str, *, version: str | int | None = None, variables: Mapping[str, Any] | None = None
) -> _ScopedAttribution:
    """Mark the LLM calls below as renderings of prompt template ``name`` (and ``version``).

    Every LLM span inside carries ``llmwatch.prompt.name``/``.version``; the ``variables`` are recorded
    only when content capture is on. Usable as a context manager or a decorator.
    """
    if not name or not isinstance(name, str):
        raise TypeError("llmwatch.prompt(): name must be a non-empty string")
    info = PromptInfo(name, None if version is None else str(version), variables)
    return _ScopedAttribution(prompt=info)
