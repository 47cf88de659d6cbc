"""`python -m bench ...` runs the `bench` command (torchrun and SLURM launch it this way).

The command line is the face, `bench_cli`, which the core never imports: it is found here
through its console-script entry point, the way the shell finds `bench`."""
import sys
from importlib.metadata import entry_points

found = [ep for ep in entry_points(group="console_scripts") if ep.name == "bench"]
if not found:
    sys.exit("bench: error: the `bench` command is not installed (pip install -e . in the aigi-bench checkout)")
sys.exit(found[0].load()())
