"""`python -m feedrank ...` (and `torchrun -m feedrank train ...`): the same CLI."""

from feedrank.cli import main

main()
