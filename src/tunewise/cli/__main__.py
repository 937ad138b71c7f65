"""`python -m tunewise.cli` (what torchrun and accelerate launch run) is the `tunewise` command."""

from tunewise.cli.app import main

main()
