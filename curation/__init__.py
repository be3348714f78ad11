"""refusal-curation: build refusal benchmarks from prompts and model responses."""

import os
from importlib.metadata import PackageNotFoundError, version

# Arrow's default pool (mimalloc) keeps the pages a stage frees: reading a 250 MB column
# of vectors left 1.45 GB resident after the table was gone, and every stage's peak
# stacked such leftovers (families at 1M: 2.18 GB; 1.75 GB with the system allocator,
# which hands large blocks back). Read before pyarrow's first allocation; a user's own
# setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

try:
    __version__ = version("refusal-curation")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
