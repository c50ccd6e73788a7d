"""The action's inputs, read once from the `INPUT_*` variables the runner sets.

A Docker action gets every declared input as `INPUT_<NAME>`, upper-cased with hyphens kept
(`repository-url` -> `INPUT_REPOSITORY-URL`), set to "" when it has no value. The old
snake_case spellings are declared too and win when given, as they do in the action this one
replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from oidc_publish.dists import DEFAULT_FOLDER
from oidc_publish.errors import InvalidInput
from oidc_publish.index_urls import PYPI_UPLOAD, checked_upload_url
from oidc_publish.runner import input_value, md_code

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _flag(value: object) -> object:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{md_code(value)} is not a boolean; write `true` or `false`")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


class Inputs(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    user: str = "__token__"
    password: SecretStr | None = None
    repository_url: str = Field(PYPI_UPLOAD, alias="repository-url")
    packages_dir: str = Field(DEFAULT_FOLDER, alias="packages-dir")
    verify_metadata: Flag = Field(True, alias="verify-metadata")
    skip_existing: Flag = Field(False, alias="skip-existing")
    verbose: Flag = True
    print_hash: Flag = Field(True, alias="print-hash")
    attestations: Flag = True
    dry_run: Flag = Field(False, alias="dry-run")
    verify_tag: Flag = Field(True, alias="verify-tag")
    wait_until_installable: Flag = Field(False, alias="wait-until-installable")
    github_attestations: Flag = Field(False, alias="github-attestations")
    github_token: SecretStr | None = Field(None, alias="github-token")
    """action.yml's default is `${{ github.token }}`, which the runner fills in."""

    @field_validator("password")
    @classmethod
    def _latin1(cls, value: SecretStr | None) -> SecretStr | None:
        # HTTP Basic authentication carries latin-1; anything else cannot be sent.
        if value is not None and not value.get_secret_value().isascii():
            try:
                value.get_secret_value().encode("latin-1")
            except UnicodeEncodeError:
                raise ValueError(
                    "it has characters an HTTP header cannot carry; an API token is plain ASCII "
                    "(check that the secret holds the token and nothing else)"
                ) from None
        return value

    @field_validator("github_token")
    @classmethod
    def _bearer(cls, value: SecretStr | None) -> SecretStr | None:
        # A bearer token is one word of visible ASCII; anything else cannot be sent as one.
        token = "" if value is None else value.get_secret_value()
        if token and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError(
                "it is not a token: a GitHub token is one word of plain ASCII (check that "
                "the secret holds the token and nothing else)"
            )
        return value

    @property
    def trusted_publishing(self) -> bool:
        return self.password is None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], mask: Callable[[str], None] = lambda _: None
    ) -> Inputs:
        """The inputs; `mask` is handed each token among them before anything else happens
        (one the action refuses is never repeated, not even to be masked)."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            public = field.alias or name
            value = input_value(environ, public, old=name if field.alias else None)
            # An empty input means "not given": the default applies.
            if value:
                values[public] = value
        checked_upload_url(values.get("repository-url", PYPI_UPLOAD))
        try:
            inputs = cls.model_validate(values)
        except ValidationError as error:
            raise _input_error(error) from None
        for secret in (inputs.password, inputs.github_token):
            if secret is not None:
                mask(secret.get_secret_value())
        if inputs.github_attestations and inputs.github_token is None:
            raise InvalidInput(
                "Input `github-attestations` is true, but `github-token` is empty.",
                fix="Leave `github-token` out (it defaults to the job's own token), or give it a "
                "token that may write the repository's attestations.",
            )
        return inputs


def _input_error(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "inputs"
    reason = str(first["msg"]).removeprefix("Value error, ")
    return InvalidInput(
        f"Input `{name}` is invalid: {reason}.",
        fix=f"Correct `{name}` in the step's `with:` block.",
    )
