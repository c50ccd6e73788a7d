"""The action's inputs, read once from the `INPUT_*` variables the runner sets.

A Docker action gets every declared input as `INPUT_<NAME>`, upper-cased with hyphens kept
(`repository-url` -> `INPUT_REPOSITORY-URL`), set to "" when it has no value. The old
snake_case spellings are declared too and win when given, as they do in the action this one
replaces.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from oidc_publish.errors import InvalidInput
from oidc_publish.index_urls import PYPI_UPLOAD, UploadUrlError, check_upload_url

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _flag(value: object) -> object:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean; write `true` or `false`")
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]


class Inputs(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    user: str = "__token__"
    password: SecretStr | None = None
    repository_url: str = Field(PYPI_UPLOAD, alias="repository-url")
    packages_dir: str = Field("dist", alias="packages-dir")
    verify_metadata: Flag = Field(True, alias="verify-metadata")
    skip_existing: Flag = Field(False, alias="skip-existing")
    verbose: Flag = False
    print_hash: Flag = Field(True, alias="print-hash")
    attestations: Flag = False
    dry_run: Flag = Field(False, alias="dry-run")

    @field_validator("repository_url")
    @classmethod
    def _upload_url(cls, value: str) -> str:
        try:
            return check_upload_url(value)
        except UploadUrlError as error:
            hint = f"; use {error.suggestion}" if error.suggestion else ""
            raise ValueError(f"{value!r}: {error.reason}{hint}") from None

    @property
    def trusted_publishing(self) -> bool:
        return self.password is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Inputs:
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            public = field.alias or name
            old = environ.get(f"INPUT_{name.upper()}", "").strip() if field.alias else ""
            value = old or environ.get(f"INPUT_{public.upper()}", "").strip()
            # An empty input means "not given": the default applies.
            if value:
                values[public] = value
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise _input_error(error) from None


def _input_error(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "inputs"
    reason = str(first["msg"]).removeprefix("Value error, ")
    return InvalidInput(
        f"Input `{name}` is invalid: {reason}.",
        fix=f"Correct `{name}` in the step's `with:` block.",
    )
