"""ruvectord: a self-healing control daemon for PostgreSQL vector databases."""

__version__ = "0.1.0"
