"""realclients suite (see docs/testing.md)."""
