"""The ``llmwatch`` command: ``report [FILE ...]``, ``demo``, ``serve-fake``, ``switch set|clear|list``,
``drill SCENARIO``.

``main`` returns the exit code instead of exiting (the console script and ``python -m llmwatch``
pass it to ``sys.exit``), so tests call it directly. Exit codes: 0 done (an empty file included),
2 a usage error, a span file that cannot be read, an address ``serve-fake`` cannot listen on, or a
missing optional dependency (the message says what to do); 1 when stdout was closed early
(``llmwatch report | head``), or when ``drill`` could not export all it sent. ``serve-fake`` exits 0
when stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from typing import IO

from llmwatch import _config
from llmwatch._export._file import SPAN_FILE_DEFAULT
from llmwatch._fleet import _cli as _fleet_cli
from llmwatch._recovery import _drill
from llmwatch._report import (
    MissingExtraError,
    Report,
    build_report,
    load_spans,
    render_terminal,
    report_to_dict,
    write_html,
)

EXIT_OK = 0
EXIT_BROKEN_PIPE = 1
EXIT_USAGE = 2
FILE_ENV = _config.variable("file_path")  # LLMWATCH_FILE_PATH
DEMO_SPAN_FILE = "llmwatch-demo.jsonl"  # not the app's span file: the demo replaces its file each run
DEMO_HTML_FILE = "llmwatch-demo.html"
WIDE_OUTPUT = 160  # columns when stdout is not a terminal (rich would assume 80 and fold the tables)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "serve-fake":
            return _serve_fake(args)
        if args.command == "switch":
            return _fleet_cli.run(args)
        if args.command == "drill":
            import llmwatch  # the public API the drill configures and flushes

            return _drill.run(args, llmwatch)
        return run_report(args.files or [default_span_file()], top=args.top, as_json=args.json, html_out=args.html)
    except BrokenPipeError:
        # `llmwatch report --json | head`: the reader left. Point stdout at devnull so the interpreter's
        # final flush does not raise again, and exit 1 (the recipe in Python's signal module docs;
        # rich does the same for the tables).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def default_span_file() -> str:
    """The span file ``llmwatch report`` reads without an argument: ``LLMWATCH_FILE_PATH``, else the
    file exporter's default, ``./llmwatch-spans.jsonl``."""
    return _config.env("file_path") or SPAN_FILE_DEFAULT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmwatch", description="Observe LLM calls: local report, demo, and a fake provider for local trials."
    )
    commands = parser.add_subparsers(dest="command", metavar="{report,demo,serve-fake,switch,drill}")
    report = commands.add_parser(
        "report",
        help="cost, tokens, latency and errors by feature, user and model, from a JSON Lines span file",
        description="Summarise the span file written by configure(exporter='file').",
    )
    report.add_argument(
        "files", nargs="*", metavar="FILE", help=f"span file(s) (default: ${FILE_ENV}, else ./{SPAN_FILE_DEFAULT})"
    )
    _add_output_options(report)
    report.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    demo = commands.add_parser(
        "demo",
        help="run an instrumented workload against a built-in loopback server, then report on it",
        description="No network and no API keys: real openai/anthropic SDKs against a local fake server.",
    )
    demo.add_argument("--requests", type=_positive_int, default=60, metavar="N", help="calls to make (default 60)")
    demo.add_argument("--concurrency", type=_positive_int, default=4, metavar="C", help="parallel workers (default 4)")
    demo.add_argument(
        "--file",
        default=f"./{DEMO_SPAN_FILE}",
        metavar="PATH",
        help=f"span file to write, replaced on each run (default ./{DEMO_SPAN_FILE})",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the workload (default 7)")
    demo.add_argument("--store", metavar="URL", help="share the budget through this Redis (docs/fleet.md)")
    demo.add_argument("--json", action="store_true", help="print the report as one JSON document")
    demo.add_argument("--top", type=_non_negative_int, default=10, metavar="N", help="users listed (default 10)")
    demo.add_argument(
        "--html",
        metavar="OUT.html",
        default=f"./{DEMO_HTML_FILE}",
        help=f"HTML page with charts (default ./{DEMO_HTML_FILE}; needs the html extra; '' for none)",
    )
    serve = commands.add_parser(
        "serve-fake",
        help="run the demo's fake OpenAI/Anthropic server for your own app (no keys, no network)",
        description="Serve the OpenAI and Anthropic APIs on loopback with deterministic answers and "
        "scenarios (errors, 429s, cut streams...), until Ctrl-C or SIGTERM. Any API key works.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=_port, default=0, metavar="N", help="port (default 0: a free one, printed)")
    serve.add_argument("--latency", type=_seconds, default=0.0, metavar="S", help="delay of JSON answers, seconds")
    serve.add_argument("--ttft", type=_seconds, default=0.0, metavar="S", help="delay to a stream's first token")
    serve.add_argument("--chunk-delay", type=_seconds, default=0.0, metavar="S", help="delay between stream chunks")
    _fleet_cli.add_parser(commands)
    _drill.add_parser(commands)
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top", type=_non_negative_int, default=10, metavar="N", help="users listed (default 10)")
    parser.add_argument("--html", metavar="OUT.html", help="also write a self-contained HTML page with charts")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 to 600 seconds, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run_report(
    paths: Sequence[str | os.PathLike[str]],
    *,
    top: int = 10,
    as_json: bool = False,
    html_out: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """``llmwatch report``: read ``paths``, print tables (or JSON), optionally write the HTML page."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        loaded = load_spans(paths)
    except FileNotFoundError as exc:
        print(_missing_file_message(exc.filename), file=err)
        return EXIT_USAGE
    except OSError as exc:
        print(f"llmwatch report: cannot read {exc.filename}: {exc.strerror or exc}", file=err)
        return EXIT_USAGE
    report = build_report(loaded, top_users=top)
    if html_out is not None:
        try:
            written = write_html(report, loaded, html_out)
        except MissingExtraError as exc:
            print(f"llmwatch report: {exc}", file=err)
            return EXIT_USAGE
        except OSError as exc:
            print(f"llmwatch report: cannot write {html_out}: {exc.strerror or exc}", file=err)
            return EXIT_USAGE
    if as_json:
        print(json.dumps(report_to_dict(report), indent=2, ensure_ascii=False), file=out)
    else:
        status = _print_tables(report, out, err)
        if status != EXIT_OK:
            return status
    if html_out is not None:
        # With --json, stdout holds only the JSON document.
        print(f"wrote {written}", file=err if as_json else out)
    return EXIT_OK


def _missing_file_message(filename: str | None) -> str:
    return (
        f"llmwatch report: no span file at {filename}. Make one with `llmwatch demo`, or call "
        f'llmwatch.configure(exporter="file") in your app (${FILE_ENV} sets its path).'
    )


def _print_tables(report: Report, out: IO[str], err: IO[str]) -> int:
    try:
        from rich.console import Console
    except ImportError:
        print(
            "llmwatch report: the tables need rich: pip install 'llmwatch[demo]' (or pip install rich); "
            "--json works without it",
            file=err,
        )
        return EXIT_USAGE
    console = Console(file=out, width=None if out.isatty() else WIDE_OUTPUT)
    render_terminal(report, console)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    # Imported here: the workload pulls in the openai and anthropic SDKs, which the report does not need.
    from llmwatch._demo import run_demo

    path = run_demo(
        requests=args.requests, concurrency=args.concurrency, file_path=args.file, seed=args.seed, store=args.store
    )
    html_out = args.html or None
    if html_out is not None and importlib.util.find_spec("plotly") is None:
        print("llmwatch demo: no HTML page (plotly is not installed: pip install 'llmwatch[html]')", file=sys.stderr)
        html_out = None
    return run_report([path], top=args.top, as_json=args.json, html_out=html_out)


def _serve_fake(args: argparse.Namespace) -> int:
    from llmwatch._demo._serve import serve_fake

    return serve_fake(
        host=args.host,
        port=args.port,
        latency_s=args.latency,
        ttft_s=args.ttft,
        chunk_delay_s=args.chunk_delay,
        out=sys.stdout,
        err=sys.stderr,
    )
