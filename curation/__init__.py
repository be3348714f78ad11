"""refusal-curation: build refusal benchmarks from prompts and model responses."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("refusal-curation")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
