"""No URL passed: TETHER_URL from the environment, else Colab's secret, else a clear error.

Colab cannot run here; a fake `google.colab.userdata` on sys.path stands in for it.
"""

from __future__ import annotations

import pytest

import tether
from tether.colab import resolve_url


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


