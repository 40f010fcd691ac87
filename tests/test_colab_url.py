"""No URL passed: TETHER_URL from the environment, else Colab's secret, else a clear error.

Colab cannot run here; a fake `google.colab.userdata` on sys.path stands in for it.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

import tether
from tether.colab import resolve_url


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("TETHER_URL", raising=False)
    for name in ("google.colab", "google.colab.userdata"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def fake_colab(no_env, monkeypatch, tmp_path):
    """A `google.colab.userdata` whose get() answers from SECRETS, raising as Colab does.

    `google` stays a namespace package (no __init__.py), so google.protobuf still imports.
    """

    def install(secrets: dict[str, str]) -> None:
        package = tmp_path / "fake" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "userdata.py").write_text(textwrap.dedent(f"""
            class SecretNotFoundError(Exception):
                pass

            SECRETS = {secrets!r}

            def get(key):
                if key not in SECRETS:
                    raise SecretNotFoundError(key)
                return SECRETS[key]
        """))
        monkeypatch.syspath_prepend(str(tmp_path / "fake"))

    return install


def test_a_url_passed_wins(monkeypatch):
    monkeypatch.setenv("TETHER_URL", "tether://10.0.0.1:1/")
    assert resolve_url("tether://127.0.0.1:7000/") == "tether://127.0.0.1:7000/"


def test_the_environment_variable(no_env, monkeypatch):
    monkeypatch.setenv("TETHER_URL", " tether://127.0.0.1:7000/\n")
    assert resolve_url(None) == "tether://127.0.0.1:7000/"


def test_colab_secret_when_no_environment_variable(fake_colab):
    fake_colab({"TETHER_URL": "tether://127.0.0.1:7001/"})
    assert resolve_url(None) == "tether://127.0.0.1:7001/"


def test_neither_is_a_clear_error(no_env):
    with pytest.raises(tether.RequestError, match="Secrets, TETHER_URL"):
        resolve_url(None)


def test_colab_without_the_secret_is_the_same_clear_error(fake_colab):
    fake_colab({})
    with pytest.raises(tether.RequestError, match="set TETHER_URL"):
        resolve_url(None)


def test_loader_and_connect_without_a_url_say_so(no_env):
    with pytest.raises(tether.RequestError, match="no URL"):
        tether.Loader(dataset="train", batch_size=4)
    with pytest.raises(tether.RequestError, match="no URL"):
        tether.connect()


def test_loader_and_connect_read_the_secret(fake_colab, serve, npy_dataset):
    daemon = serve(npy_dataset(10))
    fake_colab({"TETHER_URL": daemon.url})
    with tether.connect() as client:
        assert [d.name for d in client.datasets()] == ["train"]
    with tether.Loader(dataset="train", batch_size=4) as loader:
        assert sum(len(b["id"]) for b in loader) == 10
