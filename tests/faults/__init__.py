"""Fault injection: llmwatch must never break the host application."""
