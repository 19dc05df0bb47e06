"""The stage tests reuse the adapter tests' tiny models and batches."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "adapters"))
