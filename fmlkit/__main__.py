"""``python -m fmlkit`` runs the CLI."""

from fmlkit.cli import main

if __name__ == "__main__":
    main()
