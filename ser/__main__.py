"""`python -m ser`: the same app as the `ser` command."""

from ser.cli import main

main()
