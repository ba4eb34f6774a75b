"""`make bench`: measured accuracy / size / latency, one table per section, in one run."""
