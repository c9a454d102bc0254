"""Serve an exported model over HTTP: see ``python serve.py --help``.

The code is ``ner_ofa/tools/serve.py``; installed, the same command is ``ner-ofa-serve``."""
from ner_ofa.tools.serve import main, parse_args, run  # noqa: F401 (main/parse_args: for tests and notebooks)

if __name__ == "__main__":
    run()
