"""``python -m bnderive``: the same command line as ``bnderive``."""

from bnderive.cli import main

main(prog_name="bnderive")
