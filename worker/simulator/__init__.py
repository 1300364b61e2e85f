"""A local OneRoster 1.2 server over a seeded synthetic catalog (development, demo, tests)."""
