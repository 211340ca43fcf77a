"""Cold start, latency, round trips and package sizes of the functions (`make bench`)."""
