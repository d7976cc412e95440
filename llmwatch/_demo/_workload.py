"""``llmwatch demo``: a real instrumented workload on the loopback server, written to a span file.

Nothing here is simulated on llmwatch's side: the real ``openai`` and ``anthropic`` SDKs call a
loopback server that speaks their wire formats (JSON and SSE, with latency, time to first token and
token usage), llmwatch instruments them globally exactly as in production, and the spans go to the
JSON Lines file exporter that ``llmwatch report`` reads. No network, no keys.

The workload is a small product: five users and eight features over five providers (OpenAI, Anthropic,
Groq through the openai SDK, Gemini through google-genai, Bedrock through boto3) and eight models,
streaming and not, with the run-side events worth seeing in a report: a rate-limited call that the
SDK retries, a call the provider fails, and a budgeted feature whose ceiling refuses calls; then agent
runs with tools (``_agent.py``), one of them stopped by a per-run budget.
"""

from __future__ import annotations

import contextvars
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llmwatch
from llmwatch._demo._agent import RUNAWAY_BUDGET_USD, run_agents
from llmwatch._demo._server import FakeLLMServer

USERS = ("u-alice", "u-bob", "u-carol", "u-dave", "u-erin")
USER_WEIGHTS = (8, 5, 3, 2, 1)  # a few heavy users, a long tail: what "top users" is for
BUDGETED_FEATURE = "summarize"
# Low enough that the summarize feature runs into it during a default run.
BUDGET_USD = 0.004
DEMO_SERVICE = "llmwatch-demo"
# Loopback latencies that look like a fast hosted model.
SERVER_LATENCY_S = 0.04
SERVER_TTFT_S = 0.12
SERVER_CHUNK_DELAY_S = 0.003
_FILLER_WORDS = ("the", "of", "service", "request", "latency", "budget", "token", "model", "user", "cost", "answer")


@dataclass(frozen=True)
class DemoCall:
    """One planned request of the workload."""

    index: int
    user: str
    feature: str
    provider: str  # the client to call: openai, anthropic, groq (the openai SDK), gemini, bedrock
    model: str
    operation: str  # "chat" | "chat-stream" | "helper" | "embeddings"
    prompt_words: int
    output_words: int
    scenario: str | None = None


@dataclass
class DemoOutcome:
    """What happened to the planned calls, from the caller's side."""

    succeeded: int = 0
    failed: int = 0
    refused: int = 0
    retried: int = 0
    agent_calls: int = 0  # model calls the capped research agent made before its run budget stopped it
    store: dict[str, Any] | None = None  # stats()["store"] after the calls, with --store


# feature -> (provider, model, operation, prompt words, output words)
FEATURES: dict[str, tuple[str, str, str, tuple[int, int], tuple[int, int]]] = {
    "search": ("openai", "gpt-4o-mini", "chat", (40, 160), (20, 60)),
    "chat": ("anthropic", "claude-haiku-4-5", "helper", (60, 300), (40, 160)),
    "summarize": ("openai", "gpt-4o", "chat-stream", (400, 1200), (80, 200)),
    "support-bot": ("anthropic", "claude-sonnet-4-6", "chat-stream", (150, 500), (60, 220)),
    "rag-index": ("openai", "text-embedding-3-small", "embeddings", (100, 400), (0, 0)),
    "translate": ("groq", "llama-3.1-8b-instant", "chat-stream", (30, 120), (30, 120)),
    "extract": ("gemini", "gemini-2.5-flash", "chat", (80, 400), (20, 80)),
    "classify": ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "chat", (40, 200), (5, 20)),
}
FEATURE_WEIGHTS = (6, 5, 3, 3, 2, 3, 3, 3)


def plan_workload(requests: int, seed: int = 7) -> list[DemoCall]:
    """A deterministic mix of calls; one in 25 is rate-limited once (then retried) and one in 30 fails."""
    rng = random.Random(seed)
    names = list(FEATURES)
    calls = []
    for index in range(requests):
        feature = rng.choices(names, FEATURE_WEIGHTS)[0]
        provider, model, operation, prompt_range, output_range = FEATURES[feature]
        scenario = None
        if index % 25 == 7:
            scenario, feature = "error-429-once", "chat"
        elif index % 30 == 3:
            scenario, feature = "error-500", "search"
        provider, model, operation, prompt_range, output_range = FEATURES[feature]
        calls.append(
            DemoCall(
                index=index,
                user=rng.choices(USERS, USER_WEIGHTS)[0],
                feature=feature,
                provider=provider,
                model=model,
                operation=operation,
                prompt_words=rng.randint(*prompt_range),
                output_words=rng.randint(*output_range) if output_range[1] else 0,
                scenario=scenario,
            )
        )
    return calls


def run_demo(
    *,
    requests: int = 60,
    concurrency: int = 4,
    file_path: str | os.PathLike[str] = "llmwatch-demo.jsonl",
    seed: int = 7,
    progress: bool = True,
    store: str | None = None,
) -> Path:
    """Run the workload and return the span file it wrote (replaced if it existed).

    ``store``: share the demo's budget and switches through that Redis (docs/fleet.md); the demo's own
    budget windows there are cleared first, so each run starts its day afresh."""
    if requests < 1 or concurrency < 1:
        raise ValueError("llmwatch demo: --requests and --concurrency must be at least 1")
    path = Path(file_path)
    _fresh_file(path)
    _seed_tokenizer()
    calls = plan_workload(requests, seed)
    if store:
        _clear_demo_budgets(store)
    with FakeLLMServer(latency_s=SERVER_LATENCY_S, ttft_s=SERVER_TTFT_S, chunk_delay_s=SERVER_CHUNK_DELAY_S) as server:
        llmwatch.configure(
            service_name=DEMO_SERVICE, exporter="file", file_path=str(path), instrument=True, store=store or None
        )
        try:
            budget = llmwatch.budget(BUDGET_USD, per="day", feature=BUDGETED_FEATURE, on_exceed="raise")
            clients = _clients(server)
            outcome = _run_calls(calls, clients, concurrency, progress)
            outcome.store = llmwatch.stats().get("store")
            budget.remove()
            outcome.agent_calls = run_agents(clients["openai"])
        finally:
            llmwatch.shutdown(timeout_s=10.0)
    _print_outcome(outcome, len(calls), path, progress)
    return path


def _clear_demo_budgets(url: str) -> None:
    from llmwatch._fleet._redis import RedisStore
    from llmwatch._fleet._url import parse_store

    parsed = parse_store("--store", url)
    assert parsed is not None
    store = RedisStore(parsed, DEMO_SERVICE, timeout_s=5.0)
    try:
        for key in store.client.scan_iter(match=store.prefix + "budget:*"):
            store.client.delete(key)
    finally:
        store.close()


def _fresh_file(path: Path) -> None:
    # The report's totals must be this run's: start from an empty file (and no rotated leftover).
    for stale in (path, path.with_name(path.name + ".1")):
        stale.unlink(missing_ok=True)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True)


def _seed_tokenizer() -> None:
    # Embeddings and errors have no provider usage for some paths: let tiktoken load offline.
    from llmwatch._policy._tokens import seed_tiktoken_cache

    seed_tiktoken_cache()


def _clients(server: FakeLLMServer) -> dict[str, Any]:
    import anthropic
    import boto3
    import openai
    from botocore.config import Config
    from google import genai
    from google.genai import types

    # Demo keys: the loopback server ignores them (and llmwatch never records them). It speaks each
    # provider's own API; by its host alone an openai SDK client would be an openai_compatible server,
    # so the OpenAI and Groq clients are named for what they stand in for.
    def openai_sdk(provider: str) -> Any:
        client = openai.OpenAI(api_key="demo-not-a-key", base_url=server.openai_base_url, max_retries=2)
        return llmwatch.instrument(client, provider=provider)

    bedrock = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.base_url,
        aws_access_key_id="AKIADEMONOTAKEY",
        aws_secret_access_key="demo-not-a-secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )
    return {
        "openai": openai_sdk("openai"),
        "groq": openai_sdk("groq"),
        "anthropic": anthropic.Anthropic(api_key="demo-not-a-key", base_url=server.anthropic_base_url, max_retries=2),
        "gemini": genai.Client(api_key="demo-not-a-key", http_options=types.HttpOptions(base_url=server.base_url)),
        "bedrock": bedrock,
    }


def _run_calls(calls: list[DemoCall], clients: dict[str, Any], concurrency: int, progress: bool) -> DemoOutcome:
    outcome = DemoOutcome()
    results: Counter[str] = Counter()
    with _progress_bar(len(calls), enabled=progress) as advance, ThreadPoolExecutor(concurrency) as pool:
        # Each call runs in a copy of this context: threads do not inherit contextvars on their own.
        futures = [pool.submit(contextvars.copy_context().run, _one_call, call, clients) for call in calls]
        for future in as_completed(futures):
            results[future.result()] += 1
            advance()
    outcome.succeeded = results["ok"] + results["retried"]
    outcome.retried = results["retried"]
    outcome.failed = results["failed"]
    outcome.refused = results["refused"]
    return outcome


def _one_call(call: DemoCall, clients: dict[str, Any]) -> str:
    import anthropic
    import botocore.exceptions
    import openai
    from google.genai import errors

    provider_errors = (
        openai.APIStatusError,
        anthropic.APIStatusError,
        errors.APIError,
        botocore.exceptions.ClientError,
    )
    with llmwatch.attributes(user=call.user, feature=call.feature, session=f"s-{call.user}-{call.index // 10}"):
        try:
            _send(call, clients[call.provider])
        except llmwatch.BudgetExceeded:
            return "refused"
        except provider_errors:
            return "failed"
    return "retried" if call.scenario == "error-429-once" else "ok"


def _send(call: DemoCall, client: Any) -> None:
    prompt = _prompt(call)
    headers = {"x-fake-scenario": call.scenario, "x-fake-retry-key": f"demo-{call.index}"} if call.scenario else {}
    if call.operation == "embeddings":
        client.embeddings.create(model=call.model, input=[prompt])
    elif call.provider == "gemini":
        client.models.generate_content(model=call.model, contents=prompt)
    elif call.provider == "bedrock":
        client.converse(modelId=call.model, messages=[{"role": "user", "content": [{"text": prompt}]}])
    elif call.provider in ("openai", "groq"):
        stream = call.operation == "chat-stream"
        result = client.chat.completions.create(
            model=call.model, messages=[{"role": "user", "content": prompt}], stream=stream, extra_headers=headers
        )
        if stream:
            for _ in result:
                pass
    elif call.operation == "helper":
        kwargs = _anthropic_kwargs(call, prompt)
        with client.messages.stream(extra_headers=headers, **kwargs) as stream:
            for _ in stream.text_stream:
                pass
    else:
        for _ in client.messages.create(stream=True, extra_headers=headers, **_anthropic_kwargs(call, prompt)):
            pass


def _anthropic_kwargs(call: DemoCall, prompt: str) -> dict[str, Any]:
    return {"model": call.model, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}]}


def _prompt(call: DemoCall) -> str:
    rng = random.Random(call.index)
    words = " ".join(rng.choice(_FILLER_WORDS) for _ in range(call.prompt_words))
    # [[chunks:N]] asks the loopback server for a reply of about N words (in N stream chunks).
    return f"{call.feature} request {call.index}: {words} [[chunks:{max(call.output_words, 1)}]]"


@contextmanager
def _progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:  # rich is in the demo extra; without it, run quietly
        yield lambda: None
        return
    columns = (TextColumn("llmwatch demo"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # On stderr, like the summary line: stdout is the report's (``llmwatch demo --json`` stays clean JSON).
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("calls", total=total)
        yield lambda: bar.advance(task)


def _print_outcome(outcome: DemoOutcome, planned: int, path: Path, enabled: bool) -> None:
    if not enabled:
        return
    print(
        f"llmwatch demo: {planned} calls through the real openai, anthropic, google-genai and boto3 SDKs "
        f"on a loopback server: "
        f"{outcome.succeeded} succeeded ({outcome.retried} after a 429 retry), {outcome.failed} failed "
        f"(simulated provider errors), {outcome.refused} refused by the ${BUDGET_USD} daily budget on "
        f"'{BUDGETED_FEATURE}'; an agent run with tools, and a runaway agent stopped by a "
        f"${RUNAWAY_BUDGET_USD} per-run budget. Spans: {path}",
        file=sys.stderr,
    )
    if outcome.store is not None:
        lease = outcome.store["leases"].get(f"feature={BUDGETED_FEATURE}/day", {})
        print(
            f"llmwatch demo: the budget was shared through {outcome.store['url']} ({outcome.store['state']}): "
            f"fleet spend ${lease.get('fleet_spent_usd', 0.0):.6f} reported, {outcome.store['errors']} store errors",
            file=sys.stderr,
        )
