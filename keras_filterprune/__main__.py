"""`python -m keras_filterprune …` runs the `keras-filterprune` command line."""

from keras_filterprune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
