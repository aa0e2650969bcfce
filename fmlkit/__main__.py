"""``python -m fmlkit`` runs the CLI."""

from fmlkit.main import main

if __name__ == "__main__":
    main()
