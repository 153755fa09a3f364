"""The engine: rules (pure), retry policy (pure), the dispatcher (I/O)."""
