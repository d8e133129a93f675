"""Load tests (locust) and the side-by-side benchmark of the serving contenders."""
