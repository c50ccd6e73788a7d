"""Inputs as the runner passes them to a Docker action: `INPUT_*`, hyphens kept."""

from __future__ import annotations

import pytest

from oidc_publish.errors import InvalidInput, InvalidRepositoryUrl
from oidc_publish.index_urls import PYPI_UPLOAD
from oidc_publish.inputs import Inputs


def env(**inputs: str) -> dict[str, str]:
    return {f"INPUT_{name.upper()}": value for name, value in inputs.items()}


def test_defaults_match_the_action_this_one_replaces() -> None:
    inputs = Inputs.from_env({})
    assert inputs.user == "__token__"
    assert inputs.password is None
    assert inputs.trusted_publishing
    assert inputs.repository_url == PYPI_UPLOAD
    assert inputs.packages_dir == "dist"
    assert inputs.verify_metadata is True
    assert inputs.skip_existing is False
    assert inputs.print_hash is True
    assert inputs.dry_run is False


def test_hyphenated_names_are_read_and_values_trimmed() -> None:
    inputs = Inputs.from_env(
        {
            "INPUT_REPOSITORY-URL": "  https://test.pypi.org/legacy/\n",
            "INPUT_PACKAGES-DIR": " wheelhouse ",
            "INPUT_SKIP-EXISTING": "True",
            "INPUT_DRY-RUN": "yes",
        }
    )
    assert inputs.repository_url == "https://test.pypi.org/legacy/"
    assert inputs.packages_dir == "wheelhouse"
    assert inputs.skip_existing is True
    assert inputs.dry_run is True


def test_old_snake_case_spelling_wins_when_given() -> None:
    inputs = Inputs.from_env(
        {
            "INPUT_PACKAGES-DIR": "dist",
            "INPUT_PACKAGES_DIR": "out",
            "INPUT_VERIFY-METADATA": "true",
            "INPUT_VERIFY_METADATA": "false",
        }
    )
    assert inputs.packages_dir == "out"
    assert inputs.verify_metadata is False


@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_input_means_default(empty: str) -> None:
    inputs = Inputs.from_env({"INPUT_VERIFY-METADATA": empty, "INPUT_PASSWORD": empty})
    assert inputs.verify_metadata is True
    assert inputs.password is None


def test_password_is_kept_secret_in_reprs() -> None:
    inputs = Inputs.from_env(env(password="pypi-secret-value"))
    assert not inputs.trusted_publishing
    assert "pypi-secret-value" not in repr(inputs)
    assert inputs.password is not None
    assert inputs.password.get_secret_value() == "pypi-secret-value"


def test_bad_boolean_names_the_input_and_the_fix() -> None:
    with pytest.raises(InvalidInput) as caught:
        Inputs.from_env({"INPUT_SKIP-EXISTING": "sometimes"})
    assert "`skip-existing`" in caught.value.message
    assert "`sometimes`" in caught.value.message
    assert "`true` or `false`" in caught.value.message


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [
        ("https://upload.pypi.org/legacy", PYPI_UPLOAD),
        ("https://pypi.org/simple/", PYPI_UPLOAD),
        ("https://pypi.org/project/example/", PYPI_UPLOAD),
        ("https://pypi.org/legacy/", PYPI_UPLOAD),
        ("https://test.pypi.org/simple/", "https://test.pypi.org/legacy/"),
        ("http://upload.pypi.org/legacy/", PYPI_UPLOAD),
        ("https://index.example/simple/", "https://index.example/legacy/"),
        ("https://index.example/legacy", "https://index.example/legacy/"),
        ("http://index.example/legacy/", "https://index.example/legacy/"),
        ("https://index.example/legacy/?x=1", "https://index.example/legacy/"),
        ("https://index.example/legacy/#frag", "https://index.example/legacy/"),
    ],
)
def test_wrong_repository_url_names_the_right_one(url: str, suggestion: str) -> None:
    with pytest.raises(InvalidRepositoryUrl) as caught:
        Inputs.from_env({"INPUT_REPOSITORY-URL": url})
    assert "`repository-url`" in caught.value.message
    assert f"Use `{suggestion}`." in caught.value.fix


@pytest.mark.parametrize(
    "url", ["HTTPS://upload.pypi.org/legacy/", "https://upload.pypi.org:443/legacy/"]
)
def test_pypi_spelt_another_way_is_named_as_such(url: str) -> None:
    with pytest.raises(InvalidRepositoryUrl) as caught:
        Inputs.from_env({"INPUT_REPOSITORY-URL": url})
    assert "spelt another way" in caught.value.message
    assert "trailing slash" not in caught.value.message
    assert f"Use `{PYPI_UPLOAD}`." in caught.value.fix


def test_credentials_in_the_url_are_refused_without_being_repeated() -> None:
    with pytest.raises(InvalidRepositoryUrl) as caught:
        Inputs.from_env({"INPUT_REPOSITORY-URL": "https://alice:s3cret-pw@index.example/legacy/"})
    text = caught.value.message + caught.value.fix
    assert "s3cret-pw" not in text
    assert "alice" not in text
    assert "`password`" in text
    assert "https://index.example/legacy/" in text


@pytest.mark.parametrize("name", ["packages-dir", "repository-url", "user", "verbose"])
def test_a_line_break_in_any_input_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Inputs.from_env({f"INPUT_{name.upper()}": "dist\n::stop-commands::x"})
    assert f"`{name}`" in caught.value.message
    assert "stop-commands" not in caught.value.message


def test_a_password_http_cannot_carry_is_an_input_error() -> None:
    with pytest.raises(InvalidInput) as caught:
        Inputs.from_env({"INPUT_PASSWORD": "pypi-tökén-ŧ"})
    assert "`password`" in caught.value.message
    assert "pypi-" not in caught.value.message


def test_a_private_index_url_is_accepted_as_given() -> None:
    url = "https://devpi.example/acme/prod/"
    assert Inputs.from_env({"INPUT_REPOSITORY-URL": url}).repository_url == url


def test_secret_inputs_are_handed_to_mask_once_read() -> None:
    masked: list[str] = []

    inputs = Inputs.from_env(
        {"INPUT_PASSWORD": " pypi-secret ", "INPUT_GITHUB-TOKEN": "ghs_secret", "INPUT_USER": "u"},
        mask=masked.append,
    )

    assert masked == ["pypi-secret", "ghs_secret"]
    assert "ghs_secret" not in repr(inputs)


def test_github_attestations_need_a_github_token() -> None:
    assert Inputs.from_env({}).github_attestations is False
    with pytest.raises(InvalidInput) as caught:
        Inputs.from_env({"INPUT_GITHUB-ATTESTATIONS": "true", "INPUT_GITHUB-TOKEN": " "})
    assert "`github-token` is empty" in caught.value.message
    assert "Leave `github-token` out" in caught.value.fix


@pytest.mark.parametrize("token", ["ghs_tök", "Bearer ghs_x", "ghs_\x7f"])
def test_a_github_token_that_is_not_one_word_of_ascii_is_refused_unrepeated(token: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Inputs.from_env({"INPUT_GITHUB-TOKEN": token})
    assert "`github-token`" in caught.value.message
    assert token not in caught.value.message + caught.value.fix
