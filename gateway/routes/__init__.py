"""The HTTP routes: each parses JSON, makes one backend call and shapes the reply."""
