"""Content Credentials: a signed C2PA manifest embedded in every stored result (JPEG, PNG, WebP, MP4), written
and read with ``c2pa-python`` (the Content Authenticity Initiative's library).

The manifest says: ``c2pa.opened`` the source (the parent ingredient), then ``c2pa.edited`` with the IPTC
digital source type ``compositeWithTrainedAlgorithmicMedia``; every input is an ingredient whose
``instance_id`` is ``sha256:<its SHA-256>``; and the assertion ``io.github.faceswap-flows.job`` holds the job's
facts (operation, task_id, credits, flow run, deployment, inputs, consent). The signature (key and chain from a
:class:`~faceswap_flows.blocks.ContentSigningKey` block) covers the manifest and a hash of the whole file, so
changing one byte of the result is detected by any C2PA reader.
"""

from __future__ import annotations

import functools
import io
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

import c2pa
from cryptography import x509
from prefect.context import FlowRunContext
from pydantic import BaseModel, Field

from faceswap_flows.blocks import ContentSigningKey
from faceswap_flows.flows.exceptions import SigningNotConfigured
from faceswap_flows.flows.provenance.labels import DIGITAL_SOURCE_TYPE

if TYPE_CHECKING:
    from faceswap_flows.flows.provenance.records import JobFacts, OutputOptions

JOB_ASSERTION = "io.github.faceswap-flows.job"
SOFTWARE_AGENT = {"name": "aifaceswap.io face swap API, via faceswap-flows"}
PARENT_FIELDS = ("source_image", "source_video")
CredentialsState = Literal["trusted", "untrusted", "expired", "invalid", "absent"]
EXPIRY_FAILURES = {"signingCredential.expired", "signingCredential.untrusted"}  # c2pa reports both for an expiry


class ManifestFacts(BaseModel):
    """What the manifest's job assertion says (never secrets, bytes or the webhook)."""

    operation: str
    task_id: str
    job_id: str | None = None
    credits: int | None = None
    credits_estimated: bool = False
    digital_source_type: str = DIGITAL_SOURCE_TYPE
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    flow_run: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None
    consent: list[dict[str, Any]] = Field(default_factory=list)


class SigningPlan(BaseModel):
    """How one result is signed: the key's block and the facts its manifest states."""

    block: str
    key: ContentSigningKey
    facts: ManifestFacts

    def summary(self) -> dict[str, Any]:
        """What the provenance record says about the signature."""
        return {
            "signed": True,
            "standard": "C2PA",
            "signing_block": self.block,
            "signer": certificate_subject(self.key.certificate_chain),
            "algorithm": self.key.algorithm,
            "assertion": JOB_ASSERTION,
        }


def unsigned_summary(reason: str) -> dict[str, Any]:
    return {"signed": False, "reason": reason}


def _ingredient(item: dict[str, Any]) -> dict[str, Any]:
    name = item.get("key") or item.get("url") or item["field"]
    title = PurePosixPath(name.split("?", 1)[0]).name or item["field"]
    ingredient = {
        "title": title,
        "label": item["field"],
        "relationship": "parentOf" if item["field"] in PARENT_FIELDS else "componentOf",
    }
    if item["field"].startswith("reference_images"):
        ingredient["relationship"] = "inputTo"
    media_type = mimetypes.guess_type(title)[0]
    if media_type:
        ingredient["format"] = media_type
    if item.get("sha256"):
        ingredient["instance_id"] = f"sha256:{item['sha256']}"
    return ingredient


def manifest_definition(facts: ManifestFacts, media_type: str, title: str) -> dict[str, Any]:
    """The C2PA manifest definition of a result (c2pa-python's Builder JSON)."""
    ingredients = [_ingredient(item) for item in facts.inputs]
    parents = [i["label"] for i in ingredients if i["relationship"] == "parentOf"][:1]
    for ingredient in ingredients:
        if ingredient["relationship"] == "parentOf" and ingredient["label"] not in parents:
            ingredient["relationship"] = "componentOf"  # C2PA allows one parent
    components = [i["label"] for i in ingredients if i["relationship"] != "parentOf"]
    edited: dict[str, Any] = {
        "action": "c2pa.edited",
        "digitalSourceType": facts.digital_source_type,
        "softwareAgent": SOFTWARE_AGENT,
        "description": f"AI face swap ({facts.operation}), task {facts.task_id}",
    }
    if components:
        edited["parameters"] = {"ingredientIds": components}
    if parents:
        first = {"action": "c2pa.opened", "parameters": {"ingredientIds": parents}}
    else:  # inputs unknown (a result collected without its submitted event): the first action must be created
        first = {"action": "c2pa.created", "digitalSourceType": facts.digital_source_type}
    return {
        "claim_generator_info": [{"name": "faceswap-flows", "version": _version()}],
        "title": title,
        "format": media_type,
        "ingredients": ingredients,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [first, edited]}},
            {"label": JOB_ASSERTION, "data": facts.model_dump(mode="json")},
        ],
    }


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("faceswap-flows")
    except PackageNotFoundError:
        return "unknown"


def _signer(key: ContentSigningKey) -> c2pa.Signer:
    """The c2pa signer of ``key``; with a ``timestamp_url`` it asks that TSA to time-stamp every signature."""
    info = c2pa.C2paSignerInfo(
        key.algorithm,
        key.certificate_chain.encode(),
        key.private_key.get_secret_value().encode(),
        key.timestamp_url or None,
    )
    return c2pa.Signer.from_info(info)


def sign_stream(plan: SigningPlan, media_type: str, title: str, source: IO[bytes], dest: IO[bytes]) -> None:
    """Write ``source`` with its signed manifest embedded to ``dest``."""
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    definition = manifest_definition(plan.facts, media_type, title)
    with c2pa.Builder(definition, context=context) as builder, _signer(plan.key) as signer:
        builder.sign(signer, media_type, source, dest)


def sign_bytes(plan: SigningPlan, data: bytes, media_type: str, title: str) -> bytes:
    out = io.BytesIO()
    sign_stream(plan, media_type, title, io.BytesIO(data), out)
    return out.getvalue()


def sign_file(plan: SigningPlan, source: Path, target: Path, media_type: str, title: str | None = None) -> None:
    with source.open("rb") as inp, target.open("w+b") as out:
        sign_stream(plan, media_type, title or source.name, inp, out)


# Reading and validating


@dataclass
class CredentialsCheck:
    """What a C2PA reader found in a file, validated against the given trust anchors."""

    state: CredentialsState
    failures: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    error: str | None = None

    @property
    def job(self) -> dict[str, Any] | None:
        for assertion in (self.manifest or {}).get("assertions", []):
            if assertion.get("label") == JOB_ASSERTION:
                return assertion.get("data")
        return None

    @property
    def signer(self) -> str | None:
        info = (self.manifest or {}).get("signature_info") or {}
        return info.get("common_name") or info.get("issuer")

    @property
    def tampered(self) -> bool:
        return self.state == "invalid"


def read_credentials(stream: IO[bytes], media_type: str, trust_anchors: str | None = None) -> CredentialsCheck:
    """Read and validate the manifest of ``stream``: ``trusted`` (signature, hashes and a chain to one of
    ``trust_anchors`` all check), ``untrusted`` (signature and hashes check, the signer chains to no anchor
    given), ``expired`` (signature and hashes check, but the signing certificate expired and no trusted RFC 3161
    timestamp shows it signed while valid), ``invalid`` (a hash or the signature does not match: the file or its
    manifest changed), ``absent``."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    stream.seek(0)
    try:
        reader = c2pa.Reader(media_type, stream, context=c2pa.Context.from_dict(settings))
    except (c2pa.C2paError.ManifestNotFound, c2pa.C2paError.NotSupported):
        return CredentialsCheck("absent")
    except c2pa.C2paError as error:  # a manifest that cannot even be parsed: changed bytes inside it
        return CredentialsCheck("invalid", error=f"{type(error).__name__}: {error}")
    with reader:
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
        manifest = reader.get_active_manifest()
    found = results.get("activeManifest", {}).get("failure", [])
    failures = [f"{f.get('code')}: {f.get('explanation', '')}" for f in found]
    if state == "Trusted":
        return CredentialsCheck("trusted", failures, manifest)
    if state == "Valid":
        return CredentialsCheck("untrusted", failures, manifest)
    codes = {f.get("code") for f in found}
    if "signingCredential.expired" in codes and codes <= EXPIRY_FAILURES:
        return CredentialsCheck("expired", failures, manifest)
    return CredentialsCheck("invalid", failures, manifest)


# Loading the key before any credit is spent, and the plan of one result


_run_keys: dict[tuple[str, str], ContentSigningKey] = {}


async def load_signing_key(block: str) -> ContentSigningKey:
    """The ContentSigningKey block ``block``, read once per flow run (every result of a batch is signed with
    the key its run loaded first, without one API read per result)."""
    context = FlowRunContext.get()
    run = str(context.flow_run.id) if context is not None and context.flow_run is not None else None
    known = _run_keys.get((run, block)) if run else None
    if known is not None:
        return known
    try:
        key = await ContentSigningKey.aload(block)
    except (ValueError, KeyError) as error:
        raise SigningNotConfigured(
            f"output.signing_block: the Content Credentials signing block {block!r} cannot be loaded ({error}). "
            f"Create one with `faceswap-flows signing dev-cert` (development) or save your certificate in a "
            f"ContentSigningKey block (see README, Responsible use); or set `output.sign=False` to store results "
            "unsigned",
            field="output.signing_block",
        ) from None
    if run:
        if len(_run_keys) > 16:
            _run_keys.clear()
        _run_keys[(run, block)] = key
    return key


async def signing_plan(
    output: OutputOptions,
    *,
    task_id: str,
    operation: str,
    job_id: str | None,
    credits: int | None,
    credits_estimated: bool,
    facts: JobFacts | None,
    submitted_by: dict[str, Any] | None = None,
) -> SigningPlan | None:
    """How this result is signed (None: signing off). The flow run and deployment are the submitting run's."""
    if not output.sign:
        return None
    from faceswap_flows.flows.provenance.records import run_facts

    run = submitted_by if submitted_by and submitted_by.get("flow_run") else await run_facts()
    manifest_facts = ManifestFacts(
        operation=operation,
        task_id=task_id,
        job_id=job_id,
        credits=credits,
        credits_estimated=credits_estimated,
        inputs=[item.model_dump(exclude_none=True) for item in facts.inputs] if facts else [],
        flow_run=run.get("flow_run"),
        deployment=run.get("deployment"),
        consent=list(facts.consent) if facts else [],
    )
    key = await load_signing_key(output.signing_block)
    return SigningPlan(block=output.signing_block, key=key, facts=manifest_facts)


@functools.lru_cache(maxsize=16)
def certificate_subject(chain_pem: str) -> str:
    """The subject of the first (signing) certificate of a PEM chain."""
    return x509.load_pem_x509_certificates(chain_pem.encode())[0].subject.rfc4514_string()
