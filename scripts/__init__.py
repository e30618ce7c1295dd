"""Project scripts. The Python ones run from the repository root as `python -m scripts.<name>`."""
