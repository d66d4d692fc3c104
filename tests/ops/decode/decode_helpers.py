"""The decode tests share the merge tests' checks (2x rule, partitions, random merge trees)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "merge"))
from merge_helpers import assert_2x, max_err, random_partition, tree_merge  # noqa: E402,F401
