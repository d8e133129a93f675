"""`python -m bench`: the side-by-side benchmark (`bench.benchmark`)."""

from bench.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
