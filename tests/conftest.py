import os
import sys

# Tests share two cores with each other and with other jobs: OpenMP threads that spin while
# waiting make oversubscribed torch runs many times slower, so let them sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HASHIFLEX_PROGRESS", "0")
sys.path.insert(0, os.path.dirname(__file__))
