"""The tests' harness: servers (forked, in-process, Redis and PostgreSQL of their own), the hermetic
session, watchers, waits, keys, the fake model, the browser's accessibility check. Test modules
import from here; nothing here imports a test module."""
