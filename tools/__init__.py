"""Tools beside the library: the demo corpus's generator and the local
training cluster's launcher (`python -m tools.local_cluster`)."""
