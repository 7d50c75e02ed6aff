"""``python -m mate.data.synthetic --out DIR --motions N --seed S``: write the synthetic
benchmark (see :func:`mate.data.synthetic.writer.main`); a bad argument exits with status 2 and
one ``error:`` line (``--debug``: the traceback; :mod:`mate.cli`)."""
from mate.data.synthetic.writer import main

if __name__ == "__main__":
    main()
