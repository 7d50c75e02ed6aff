"""``python -m mate.train``."""
from mate.train.cli import main

if __name__ == "__main__":
    main()
