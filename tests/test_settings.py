"""Settings: one frozen object read from the environment in one place, changed for a block or for good."""

from __future__ import annotations

import pytest

import stackcube
from stackcube.settings import S3Settings, Settings


def test_the_environment_is_read_in_one_place() -> None:
    env = {
        "STACKCUBE_MAX_CONCURRENCY": "8",
        "STACKCUBE_HEADER_BYTES": "16384",
        "STACKCUBE_RETRIES": "0",
        "STACKCUBE_RETRY_DEADLINE": "2.5",
        "STACKCUBE_REQUEST_TIMEOUT": "4",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "not-read-beyond-its-presence",
    }
    settings = Settings.from_env(env)
    assert settings == Settings(
        max_concurrency=8,
        header_bytes=16384,
        retries=0,
        retry_deadline=2.5,
        request_timeout=4.0,
        s3=S3Settings(endpoint="http://127.0.0.1:9000", region="eu-west-1", signed=True),
    )
    assert settings.s3.allow_http
    assert "not-read" not in repr(settings)  # only whether there are credentials, never the credentials
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"AWS_ENDPOINT_URL_S3": "https://s3.example", "AWS_PROFILE": "x"}).s3 == S3Settings(
        endpoint="https://s3.example", signed=True
    )
    with pytest.raises(ValueError, match=r"STACKCUBE_RETRIES='many' is not a whole number"):
        Settings.from_env({"STACKCUBE_RETRIES": "many"})


def test_set_applies_now_and_a_block_restores() -> None:
    before = stackcube.settings.current()
    with stackcube.settings.set(max_concurrency=3, retries=1) as inside:
        assert inside.max_concurrency == 3
        assert stackcube.settings.current().retries == 1
    assert stackcube.settings.current() == before
    override = stackcube.settings.set(header_bytes=4096)
    try:
        assert stackcube.settings.current().header_bytes == 4096
    finally:
        override.__exit__(None, None, None)
    assert stackcube.settings.current() == before


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="no setting 'max_concurency'; the settings are max_concurrency"):
        stackcube.settings.set(max_concurency=3)
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        stackcube.settings.set(max_concurrency=0)
    with pytest.raises(ValueError, match="retries must not be negative"):
        Settings(retries=-1)


def test_reset_reads_the_environment_again(monkeypatch) -> None:
    before = stackcube.settings.current()
    monkeypatch.setenv("STACKCUBE_MAX_CONCURRENCY", "5")
    try:
        assert stackcube.settings.current() == before  # read once, not at every use
        stackcube.settings.reset()
        assert stackcube.settings.current().max_concurrency == 5
    finally:
        monkeypatch.undo()
        stackcube.settings.reset()
    assert stackcube.settings.current() == before


def test_the_old_module_attributes_still_work_with_a_warning() -> None:
    before = stackcube.settings.current()
    with pytest.warns(DeprecationWarning, match=r"use stackcube.settings.current\(\).retries"):
        assert stackcube.settings.retries == before.retries
    try:
        with pytest.warns(DeprecationWarning, match=r"use stackcube.settings.set\(max_concurrency=...\)"):
            stackcube.settings.max_concurrency = 7
        assert stackcube.settings.current().max_concurrency == 7
    finally:
        stackcube.settings.set(max_concurrency=before.max_concurrency)
    with pytest.raises(AttributeError):
        _ = stackcube.settings.nope
