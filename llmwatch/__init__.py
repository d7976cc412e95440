"""llmwatch: observe LLM calls in production."""
