"""ONNX Runtime INT8 of an exported model: see ``python quantize_model.py --help``.

The code is ``ner_ofa/tools/quantize.py``; installed, the same command is ``ner-ofa-quantize``."""
from ner_ofa.tools.quantize import main, parse_args, run  # noqa: F401 (main/parse_args: for tests and notebooks)

if __name__ == "__main__":
    run()
