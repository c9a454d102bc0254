"""Your labelled data -> the small model to deploy, in one command: see ``python compress.py --help``.

The code is ``ner_ofa/tools/compress.py``; installed, the same command is ``ner-ofa-compress``."""
from ner_ofa.tools.compress import main, parse_args, run  # noqa: F401 (main/parse_args: for tests and notebooks)

if __name__ == "__main__":
    run()
