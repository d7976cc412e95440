"""The built-in demo: a loopback LLM server and an instrumented workload."""
