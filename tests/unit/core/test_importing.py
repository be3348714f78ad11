"""`without`: packages are missing inside it, in its own thread only, unless already
imported, and import as usual afterwards. Each case runs in a fresh interpreter, where
`colorsys` (a tiny standard module nothing imports at start-up) is not yet loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_a_package_is_missing_inside_and_imports_afterwards() -> None:
    assert run("""
        from curation.core.importing import without
        with without("colorsys"):
            try:
                import colorsys
                print("imported")
            except ModuleNotFoundError as exc:
                print("missing:" + exc.name)
        import colorsys
        print(colorsys.__name__)
    """) == ["missing:colorsys", "colorsys"]


def test_an_imported_package_and_other_threads_are_left_alone() -> None:
    assert run("""
        import threading
        from curation.core.importing import without
        import json
        with without("json", "colorsys"):
            import json.tool
            print(json.tool.__name__)
            thread = threading.Thread(target=lambda: print(__import__("colorsys").__name__))
            thread.start()
            thread.join()
    """) == ["json.tool", "colorsys"]
