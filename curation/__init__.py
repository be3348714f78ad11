"""refusal-curation: build refusal benchmarks from prompts and model responses."""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

# Arrow's default pool (mimalloc) keeps the pages a stage frees: reading a 250 MB column
# of vectors left 1.45 GB resident after the table was gone, and every stage's peak
# stacked such leftovers (families at 1M: 2.18 GB; 1.75 GB with the system allocator,
# which hands large blocks back). pyarrow reads the variable when it is imported, which
# `curate` does after this; a library user who imported it first (pandas and sklearn do)
# gets the system pool for later allocations. A user's own setting wins.
if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # also for Ray workers
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].set_memory_pool(sys.modules["pyarrow"].system_memory_pool())

try:
    __version__ = version("refusal-curation")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
