"""The repository's unit tests as the collection runs them (ansible-test units).

Tests marked ``repository`` check the library against files of the source repository that the collection does not
ship (the manager's xml/ definitions, for example); they run in the repository and are deselected here.
"""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "repository: reads files of the source repository; not run from the collection")


def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if item.get_closest_marker("repository") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
