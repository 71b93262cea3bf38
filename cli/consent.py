"""``faceswap-flows consent add | list | revoke``: the consent register of face photos (records in the storage
block, see ``flows.provenance.consent``)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from faceswap_flows.cli.common import fail, load_storage_block

if TYPE_CHECKING:
    from faceswap_flows.blocks import MediaStorage

consent_app = typer.Typer(
    rich_markup_mode=None,
    help="The consent register: face photos that may be swapped, on whose consent, for what, until when.",
    no_args_is_help=True,
)
# ConsentRecord's fields by the option that gives them (an error about ``expires`` names ``--until``).
FIELD_OPTIONS = {"sha256": "photo", "consented_by": "by", "consented_at": "at", "expires": "until"}
StorageOption = Annotated[
    str, typer.Option("--storage", "--storage-block", help="Name of the MediaStorage block holding the register.")
]


def _storage(block: str) -> MediaStorage:
    return load_storage_block(block)


def _photo_sha256(photo: str) -> str:
    """The SHA-256 of a photo given as a file, or given directly as 64 hex digits."""
    from faceswap_flows.flows.provenance.consent import file_sha256

    if re.fullmatch(r"[0-9a-fA-F]{64}", photo):
        return photo.lower()
    path = Path(photo).expanduser()
    if not path.is_file():
        fail(f"photo: {photo} is neither a file nor a SHA-256 (64 hex digits)")
    return file_sha256(path.read_bytes())


@consent_app.command("add")
def consent_add(
    photo: Annotated[str, typer.Argument(help="The face photo (a file), or its SHA-256.")],
    by: Annotated[str, typer.Option("--by", help="Who consented (the person, or their guardian).")],
    scope: Annotated[str, typer.Option(help="What the photo may be used for.")],
    until: Annotated[str | None, typer.Option(help="Last day the consent holds (YYYY-MM-DD).")] = None,
    person: Annotated[str | None, typer.Option(help="The person in the photo.")] = None,
    at: Annotated[str | None, typer.Option(help="When consent was given (YYYY-MM-DD; default today).")] = None,
    storage_block: StorageOption = "faceswap-media",
) -> None:
    """Register a face photo's consent. Example:
    faceswap-flows consent add me.jpg --by "Ada Lovelace" --scope "marketing video 2027" --until 2027-12-31"""
    from pydantic import ValidationError

    from faceswap_flows.flows.provenance.consent import ConsentRecord, save_consent

    sha256 = _photo_sha256(photo)
    try:
        record = ConsentRecord(
            sha256=sha256,
            person=person,
            consented_by=by,
            consented_at=at or date.today(),
            scope=scope,
            expires=until,
            photo=None if sha256 == photo.lower() else Path(photo).name,
        )
    except ValidationError as error:
        problem = error.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else ""
        fail(
            f"{FIELD_OPTIONS.get(field, field)}: {problem['msg']} (got {problem.get('input')!r}; dates are YYYY-MM-DD)"
        )
    if record.expires is not None and record.expires < record.consented_at:
        fail(f"until: {record.expires} is before the day the consent was given ({record.consented_at}, `at`)")
    save_consent(_storage(storage_block), record)
    until_text = f"until {record.expires.isoformat()}" if record.expires else "with no end date"
    typer.echo(
        f"registered the consent of {by} for {record.photo or 'the photo'} (sha256 {sha256}): scope {scope!r}, "
        f"{until_text}"
    )


@consent_app.command("list")
def consent_list(
    storage_block: StorageOption = "faceswap-media",
    all_records: Annotated[bool, typer.Option("--all", help="Include revoked and expired consents.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Show whole SHA-256 hashes (default: 12 hex digits).")] = False,
) -> None:
    """The registered face photos as a table: sha256, photo, person, who consented, scope, until, status.

    Example: faceswap-flows consent list --storage faceswap-media
    """
    from faceswap_flows.cli.common import print_table
    from faceswap_flows.flows.provenance.consent import list_consents

    today = date.today()
    rows = []
    for record in list_consents(_storage(storage_block)):
        problem = record.problem(today)
        if problem and not all_records:
            continue
        rows.append(
            {
                "sha256": record.sha256 if full else record.sha256[:12],
                "photo": record.photo or "-",
                "person": record.person or "-",
                "consented by": record.consented_by,
                "scope": record.scope,
                "until": record.expires.isoformat() if record.expires else "-",
                "status": problem or "valid",
            }
        )
    if not rows:
        typer.echo("no consent record" + ("" if all_records else " in force (--all also lists revoked and expired)"))
        return
    print_table(list(rows[0]), rows)


@consent_app.command("revoke")
def consent_revoke(
    photo: Annotated[str, typer.Argument(help="The face photo (a file), or its SHA-256.")],
    storage_block: StorageOption = "faceswap-media",
) -> None:
    """Revoke a face photo's consent: flows with require_consent refuse it from now on (the record stays).

    Example: faceswap-flows consent revoke me.jpg
    """
    from faceswap_flows.flows.provenance.consent import revoke_consent

    sha256 = _photo_sha256(photo)
    try:
        record = revoke_consent(_storage(storage_block), sha256)
    except KeyError:
        fail(f"photo: no consent record for sha256 {sha256}")
    typer.echo(f"revoked the consent of {record.consented_by} for {record.photo or sha256} at {record.revoked_at}")
