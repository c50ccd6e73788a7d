"""What a refusal means and what to do about it, in one place.

PyPI's upload refusals, the analysis of a failed mint, the table of claims against the
publisher PyPI would need, and the notices about how a job publishes. The README's
Troubleshooting section is generated from `REFUSALS` and the error catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from oidc_publish.claims import Claims
from oidc_publish.errors import (
    PYPI_STATUS_PAGE,
    Diagnostic,
    Level,
    PublisherMismatch,
    UploadRejected,
)
from oidc_publish.index_urls import Index
from oidc_publish.runner import RunnerContext, md_code, workflow_filename

PYPI_REUSABLE_WORKFLOWS = (
    "https://docs.pypi.org/trusted-publishers/troubleshooting/#reusable-workflows-on-github"
)
_LIMIT_REQUEST = "https://github.com/pypi/support/issues/new?template=limit-request-file.yml"
# Where PyPI's "Project size too large" answer points (warehouse's forklift/legacy.py).
_PROJECT_LIMIT = (
    "https://docs.pypi.org/project-management/storage-limits"
    "#requesting-a-project-size-limit-increase"
)


# Warehouse's answer to a trusted publisher's token for a project it does not have, whatever
# publisher minted the token: it looks the project up before it checks the token's scope.
_NEW_PROJECT = "non-user identities cannot create new projects"
# A minted token reaches the projects whose publisher matched the mint, and no others.
_OIDC_SCOPE = "oidc scoped token is not valid for project"


@dataclass(frozen=True)
class Refusal:
    """One of PyPI's upload refusals, recognised by words in its reason phrase.

    `<project>` and `<index>` in the title are filled in on the annotation. `fix` says what
    to do in general words, as the README gives it; a refusal about one project has
    `linked`, which says the same naming the project and its pages on the index.
    """

    words: tuple[str, ...]
    title: str
    fix: str
    linked: Callable[[Index, str], str] | None = None

    def fix_for(self, index: Index, project: str) -> str:
        return self.linked(index, project) if self.linked else self.fix


def _publisher_missing(index: Index, project: str) -> str:
    from urllib.parse import quote

    where = (
        f"{index.web}/manage/project/{quote(project)}/settings/publishing/" if index.web else None
    )
    pending = f"{index.web}/manage/account/publishing/" if index.web else None
    return (
        f"The upload token this run minted covers the projects whose trusted publisher "
        f"matches this workflow, and {md_code(project)} has none. Add the same publisher "
        "(owner, repository, workflow file and environment) to "
        f"{md_code(project)}"
        + (f" at {where}" if where else f" in its settings on {index.display_name}")
        + ". If the project does "
        "not exist yet, add it as a pending publisher"
        + (f" at {pending}" if pending else "")
        + "; PyPI keeps one pending publisher per workflow, so new projects are created one "
        "run at a time. Then re-run the job: files already on the index are recognised."
    )


def _project_missing(index: Index, project: str) -> str:
    from packaging.utils import canonicalize_name

    name = md_code(canonicalize_name(project))
    where = (
        f"at {index.web}/manage/account/publishing/"
        if index.web
        else f"on your account's publishing page on {index.display_name}"
    )
    return (
        f"{index.display_name} has no project {name}, and a trusted publisher can create a "
        "project only through a pending publisher: the token this run minted came from the "
        "publisher of another project, or from a pending publisher for another name. Add a "
        f"pending publisher for the project {name}, with the same owner, repository, workflow "
        f"file and environment, {where}. PyPI keeps one pending publisher per workflow and "
        "creates one project per run that way: publish a second new project in a run of its "
        f"own. If one was added, check that its project name is {name}, the distribution's "
        "name as PyPI normalises it. Then re-run the job: files already on the index are "
        "recognised."
    )


REFUSALS: list[Refusal] = [
    # First: these are whole sentences of PyPI's, and a project's name quoted in another
    # refusal's reason must not pass for them.
    Refusal(
        (_NEW_PROJECT,),
        "<project> does not exist on <index>",
        "The index has no project of this name, and a trusted publisher can create a project "
        "only through a pending publisher: the token this run minted came from the publisher "
        "of another project, or from a pending publisher for another name. Add a pending "
        "publisher for the project, with the same owner, repository, workflow file and "
        "environment, on your account's publishing page on the index (the annotation links "
        "it). PyPI keeps one pending publisher per workflow and creates one project per run "
        "that way: publish a second new project in a run of its own. If one was added, check "
        "that its project name is the distribution's name as PyPI normalises it. Then re-run "
        "the job: files already on the index are recognised.",
        linked=_project_missing,
    ),
    Refusal(
        (_OIDC_SCOPE,),
        "No trusted publisher on <project>",
        "The upload token this run minted covers the projects whose trusted publisher "
        "matches this workflow, and this project has none. Add the same publisher (owner, "
        "repository, workflow file and environment) to the project in its settings on the "
        "index (the annotation links the page). If the project does not exist yet, add it as "
        "a pending publisher; PyPI keeps one pending publisher per workflow, so new projects "
        "are created one run at a time. Then re-run the job: files already on the index are "
        "recognised.",
        linked=_publisher_missing,
    ),
    Refusal(
        ("invalid attestations", "attestation"),
        "Attestation refused",
        "PyPI verifies each attestation against the trusted publisher. A Build Config URI "
        "mismatch means the publisher's workflow file is not the workflow that called this "
        "job (a reusable workflow, or a renamed file): name the calling workflow's file in "
        "the publisher, or set `attestations: false`.",
    ),
    Refusal(
        ("previously used",),
        "Filename previously used",
        "PyPI never accepts a filename again, even after the file was deleted. Publish a new "
        "version (a post-release such as `1.0.0.post1` if nothing else changed).",
    ),
    # Before "File too large": PyPI's second size limit says "too large" too.
    Refusal(
        ("project size too large",),
        "Project too large",
        "With this file, the project's files together would pass its total size limit (10 GB "
        "by default on PyPI). Delete old releases or files you no longer need (pre-releases, "
        "development builds) in the project's settings on PyPI, or ask for a project size "
        f"increase: {_PROJECT_LIMIT}",
    ),
    Refusal(
        ("too large", "too big"),
        "File too large",
        f"PyPI's default limit is 100 MB per file. Make the file smaller, or ask for a higher "
        f"limit for the project: {_LIMIT_REQUEST}",
    ),
    Refusal(
        ("older than",),
        "Release too old for new files",
        "PyPI refuses new files for releases older than 14 days. Publish the files under a new "
        "version.",
    ),
    Refusal(
        ("isn't allowed to upload", "not allowed to upload", "not valid for project"),
        "Token not allowed for this project",
        "The API token passed as `password` is scoped to other projects, or its account may "
        "not upload to this one. Create a token scoped to this project from an account that "
        "owns or maintains it, or publish through trusted publishing: add this workflow as "
        "the project's trusted publisher and remove `password`.",
    ),
    Refusal(
        ("read-only", "read only"),
        "Index in read-only mode",
        f"Uploads are disabled for maintenance. Check {PYPI_STATUS_PAGE} and re-run later.",
    ),
    Refusal(
        ("expired",),
        "Upload token expired",
        "The token expired and could not be renewed. Re-run the job; with an API token, "
        "create a new one.",
    ),
    Refusal(
        ("username/password", "invalid or non-existent authentication", "invalid api token"),
        "Credentials refused",
        "PyPI takes API tokens with `user: __token__` (the default). Check the secret passed as "
        "`password`, or remove `password` to use trusted publishing.",
    ),
    Refusal(
        ("only one sdist",),
        "A second sdist for this release",
        "The release already has an sdist; PyPI allows one. Upload only wheels for it, or "
        "publish a new version.",
    ),
    Refusal(
        ("digest",),
        "The file changed in transit",
        "The digest the index computed differs from the one sent. Re-run the job; if it "
        "persists, something between the runner and the index alters uploads.",
    ),
    Refusal(
        (
            "metadata",
            "invalid value",
            "classifier",
            "description",
            "invalid distribution",
            "filename",
        ),
        "Metadata refused",
        "Fix the field the message names in pyproject.toml and build again; `twine check "
        "--strict dist/*` shows most of these before release.",
    ),
]


# Whatever PyPI's reason, when no refusal above recognises it.
UNRECOGNISED = Refusal(
    (),
    "Upload refused",
    "Read the index's reason, quoted in the message, fix what it names, and re-run the job.",
)


def upload_refusal(
    index: Index,
    filename: str,
    display: str,
    status: int,
    reason: str,
    *,
    project: str,
) -> UploadRejected:
    said = reason.lower()
    refusal = next((r for r in REFUSALS if any(word in said for word in r.words)), UNRECOGNISED)
    return UploadRejected(
        f"{index.display_name} refused {md_code(filename)}: HTTP {status} {md_code(reason)}",
        fix=refusal.fix_for(index, project),
        file=display,
        title=refusal.title.replace("<project>", project).replace("<index>", index.display_name),
    )


def mint_refusal(
    index: Index,
    codes: Sequence[tuple[str, str]],
    message: str,
    claims: Claims | None,
    project: str | None,
) -> PublisherMismatch:
    """PyPI's 422 from the mint endpoint, with the publisher this run would need."""
    reasons = [f"`{code}`: {md_code(text)}" for code, text in codes] or [md_code(message)]
    names = {code for code, _ in codes}
    text = " ".join(description for _, description in codes)
    claims = claims or Claims()
    needed = claims.publisher()
    fixes: list[str] = []
    if "invalid-pending-publisher" in names:
        fixes.append(
            "The project already exists, so its pending publisher no longer applies: add "
            "this publisher on the project's own publishing page."
        )
    if "environment" in text:
        fixes.append(
            "The publisher names an environment the job does not match: set the job's "
            "`environment:` to the publisher's (the job has "
            f"{md_code(claims.environment or 'none')}), or change the publisher."
        )
    if "job_workflow_ref" in text or "workflow" in text.lower():
        fixes.append(
            "PyPI matches the workflow file name: the publisher must name "
            f"{md_code(needed.workflow)}."
        )
    if "invalid-token" in names:
        fixes.append(
            "The identity token itself was refused (expired, wrong audience or issuer); "
            "re-run the job, and make sure `repository-url` points at the index you mean."
        )
    if not fixes:
        fixes.append(
            "Usual causes: the workflow file was renamed, the job's `environment:` is "
            "missing or misspelt, the repository was renamed or transferred (the owner id "
            "changed), or the project does not exist yet and has no pending publisher."
        )
    environment = md_code(needed.environment) if needed.environment else "none"
    fixes.append(
        f"A publisher matching this run has owner {md_code(needed.owner)}, repository "
        f"{md_code(needed.repository)}, workflow {md_code(needed.workflow)} and environment "
        f"{environment}."
    )
    if project:
        link = index.publisher_form_url(
            project, needed.owner, needed.repository, needed.workflow, needed.environment
        )
    else:
        link = f"{index.web}/manage/account/publishing/" if index.web else None
    if link:
        fixes.append(f"Configure it at {link}")
    return PublisherMismatch(
        f"{index.display_name} refused to mint an upload token: " + "; ".join(reasons),
        fix=" ".join(fixes),
        details=claims_table(claims),
    )


def claims_table(claims: Claims) -> str:
    """The identity token's claims beside the publisher PyPI would match them against."""
    needed = claims.publisher()
    rows = [
        ("Owner", claims.repository_owner, needed.owner),
        ("Repository", claims.repository, needed.repository),
        ("Owner id", claims.repository_owner_id, needed.owner_id),
        ("Workflow", claims.job_workflow_ref, needed.workflow),
        ("Environment", claims.environment or "(none)", needed.environment or "(any)"),
        ("workflow_ref", claims.workflow_ref, None),
        ("ref", claims.ref, None),
        ("event_name", claims.event_name, None),
    ]
    lines = ["| | This run's identity token | The publisher PyPI needs |", "|---|---|---|"]
    lines += [
        f"| {name} | {md_code(have)} | {md_code(need) if need is not None else ''} |"
        for name, have, need in rows
    ]
    return "\n".join(lines)


def reusable_workflow_warning(claims: Claims) -> Diagnostic:
    needed = claims.publisher()
    caller = workflow_filename(claims.workflow_ref)
    return Diagnostic(
        Level.WARNING,
        "Publishing from a reusable workflow",
        f"This job runs in the reusable workflow {md_code(claims.job_workflow_ref)}, called "
        f"from {md_code(claims.workflow_ref)}. PyPI matches the reusable workflow's file, "
        f"{md_code(needed.workflow)}, not the caller {md_code(caller)}, and its support for "
        "reusable workflows is limited.",
        fix=f"Name {md_code(needed.workflow)} in the trusted publisher, or publish from the "
        f"calling workflow directly. See {PYPI_REUSABLE_WORKFLOWS}",
    )


def password_notice(context: RunnerContext, index: Index, project: str) -> Diagnostic | None:
    """One notice when an API token is used where trusted publishing would work."""
    if not (index.is_pypi or index.is_testpypi) or not context.on_github_com:
        return None
    if context.is_fork_pull_request or context.event_name == "pull_request_target":
        return None
    owner, _, repository = context.repository.partition("/")
    link = index.publisher_form_url(project, owner, repository, context.workflow_filename, None)
    return Diagnostic(
        Level.NOTICE,
        "Trusted publishing would work here",
        f"This job uploads with an API token. {index.display_name} can trust this workflow "
        "instead, and then no long-lived secret is needed.",
        fix=f"Add a trusted publisher at {link} , give the job `permissions: id-token: write`, "
        "and remove `password`.",
    )


def attestations_skipped(why: str) -> Diagnostic:
    """One notice when `attestations: true` cannot be honoured; the upload goes on."""
    return Diagnostic(
        Level.NOTICE,
        "No attestations for this upload",
        f"The files are uploaded without PEP 740 attestations: {why}.",
        fix="Publish to PyPI or TestPyPI through trusted publishing to attest the files, or set "
        "`attestations: false` to silence this notice.",
    )


def reusable_workflow_attestations(claims: Claims) -> Diagnostic:
    """PyPI checks an attestation's Build Config URI, which names the calling workflow,
    against the publisher, which names the reusable one: it would refuse the upload."""
    return Diagnostic(
        Level.WARNING,
        "Published without attestations from a reusable workflow",
        f"This job runs in the reusable workflow {md_code(claims.job_workflow_ref)}, called "
        f"from {md_code(claims.workflow_ref)}. An attestation names the calling workflow, the "
        "trusted publisher the reusable one, so PyPI would refuse the files; they are uploaded "
        "without attestations.",
        fix="Publish from a job in the calling workflow itself to attest the files, or set "
        f"`attestations: false` to silence this warning. See {PYPI_REUSABLE_WORKFLOWS}",
    )
