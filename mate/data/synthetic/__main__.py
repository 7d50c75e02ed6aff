"""``python -m mate.data.synthetic --out DIR --motions N --seed S``: write the synthetic
benchmark (see :func:`mate.data.synthetic.writer.main`); a bad argument exits with status 2."""
import sys

from mate.data.synthetic.writer import main

if __name__ == "__main__":
    try:
        main()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
