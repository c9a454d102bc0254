"""The helpers behind the stage scripts, one job per module (docs/design.md), and the Python API:
``from ner_ofa import NerPredictor`` (ner_ofa/predictor.py)."""


def __getattr__(name):
    # imported on first use, so that `from ner_ofa import cli` does not load a model stack it does not need
    if name == "NerPredictor":
        from ner_ofa.predictor import NerPredictor

        return NerPredictor
    raise AttributeError(f"module 'ner_ofa' has no attribute {name!r}")
