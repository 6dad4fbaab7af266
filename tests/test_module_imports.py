"""Every module of the product imports on its own, whatever was imported before it.

A cycle between modules that import names from each other (snapshots → imports → pipeline → undo →
snapshots) only shows when the cycle is entered at one particular module; Django's URL loading happens
to enter it elsewhere, so pages work while a worker or a shell that imports that module first crashes."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import segments_app

# Loaded once by Django and never again: models (the app registry holds them) and the admin
# (registering twice is an error). Migrations are not imported by code.
KEPT = ("segments_app.models", "segments_app.admin", "segments_app.apps", "segments_app.migrations")


def product_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(segments_app.__path__, "segments_app.")
        if not info.name.startswith(KEPT)
    ]
    return sorted(names)


def test_the_walk_sees_the_product() -> None:
    names = product_modules()
    assert {"segments_app.snapshots", "segments_app.imports.pipeline", "segments_app.views"} <= set(names)


@pytest.mark.parametrize("name", product_modules())
def test_module_imports_first(name: str) -> None:
    saved = {key: module for key, module in sys.modules.items() if key.startswith("segments_app.")}
    try:
        for key in saved:
            if not key.startswith(KEPT):
                del sys.modules[key]
        importlib.import_module(name)
    finally:
        fresh = [key for key in sys.modules if key.startswith("segments_app.") and key not in saved]
        for key in [key for key in sys.modules if key.startswith("segments_app.")]:
            del sys.modules[key]
        sys.modules.update(saved)
        # Importing a submodule also binds it on its package: put the packages' attributes back too, or
        # `monkeypatch.setattr("segments_app.x.y", ...)` in a later test would patch a stray copy.
        for key, module in saved.items():
            parent, _, child = key.rpartition(".")
            setattr(sys.modules[parent], child, module)
        for key in fresh:
            parent, _, child = key.rpartition(".")
            if parent in sys.modules and hasattr(sys.modules[parent], child):
                delattr(sys.modules[parent], child)
