"""`python -m liid_cli ...`, also the entry point for `torchrun -m liid_cli`."""

from liid_cli.cli import main

main()
