"""The built-in demo: a loopback LLM server and an instrumented workload."""

from llmwatch._demo._workload import run_demo

__all__ = ["run_demo"]
