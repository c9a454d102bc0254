"""Text → entities with an exported model or any model directory of this project: see ``python predict.py --help``.

The code is ``ner_ofa/tools/predict.py``; installed, the same command is ``ner-ofa-predict``."""
from ner_ofa.tools.predict import main, parse_args, run  # noqa: F401 (main/parse_args: for tests and notebooks)

if __name__ == "__main__":
    run()
