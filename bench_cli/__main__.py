"""`python -m bench_cli ...` is the `bench` command."""
import sys

from bench_cli import main

sys.exit(main())
