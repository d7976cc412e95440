"""Decisions that return values: budgets and kill switches, content policy, prices, tokens."""
