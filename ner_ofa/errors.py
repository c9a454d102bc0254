"""The project's logger and its bad-input error (one line, exit code 2, nothing written)."""
import logging


logger = logging.getLogger("msra_ner_ofa")


class UserError(Exception):
    """Bad input (data, flags, model directories): reported as one line, exit code 2, nothing written."""
