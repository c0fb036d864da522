"""User-contributed training photos: POST /api/uploads, DELETE /api/uploads/{id}, stats.

The multipart body is parsed here (not by FastAPI's Form/File parameters) so that size
limits apply while streaming and every error is a single human-readable `detail`. What the
OpenAPI document says about these operations lives in backend/upload_openapi.py (one place).
"""

from __future__ import annotations

import math
import threading
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from contract import LABELS

from ..decode_budget import BudgetBusy, BudgetTooSmall, DecodeBudget
from ..dependencies import SettingsDep, StoreDep, UploadLimiterDep
from ..hosts import check_same_origin
from ..images import ImageRejected, clean_crop, clean_original, probe
from ..ratelimit import RateLimiter, client_address
from ..storage import IDEMPOTENCY_KEY, Quota, UploadError
from ..upload_openapi import (
    CONSENT_VALUES,
    CREATE_OPERATION_ID,
    DELETE_OPERATION_ID,
    FORM_FIELDS,
    IDEMPOTENCY_KEY_HEADER,
    SOURCES,
)

router = APIRouter(prefix="/api/uploads", tags=["uploads"])

CONSENT_YES = frozenset(CONSENT_VALUES)  # exactly these strings (the OpenAPI enum)
MAX_FIELD_BYTES = 1024


_BUDGETS: dict[int, DecodeBudget] = {}
_BUDGETS_LOCK = threading.Lock()  # lru_cache could hand two racing first callers two budgets


def decode_budget(settings) -> DecodeBudget:
    """The process-wide decode memory budget (one per configured size: memory is per process).

    Decoding a 4096x3072 photo takes ~150 MB and a 128x128 crop ~200 KB, so uploads reserve the
    bytes their headers announce instead of taking one of a fixed number of slots.
    """
    with _BUDGETS_LOCK:
        capacity = settings.decode_memory_bytes
        if capacity not in _BUDGETS:
            _BUDGETS[capacity] = DecodeBudget(capacity)
        return _BUDGETS[capacity]


class UploadCreated(BaseModel):
    id: str = Field(description="Upload id (uuid4 hex); shared by identical contributions.")
    label: str = Field(description="The stored label.")
    sha256: str = Field(description="sha256 of the stored, re-encoded PNG crop.")
    deletion_token: str = Field(
        description="Secret for DELETE /api/uploads/{id} (X-Deletion-Token). Only its hash is stored: "
        "keep it, it cannot be shown again."
    )
    duplicate: bool = Field(
        description="True when another contribution shares these exact pixels (same label): the "
        "response carries the shared id and a token that withdraws only this contribution."
    )
    resent: bool = Field(
        False,
        description="True when an earlier send with the same Idempotency-Key had already stored "
        "this contribution (its answer was lost): nothing new is stored and the token returned "
        "replaces the earlier one.",
    )


class UploadStats(BaseModel):
    total: int = Field(description="Number of distinct stored crops.")
    labels: dict[str, int] = Field(description="Stored crops per label (every label present).")


class ErrorDetail(BaseModel):
    detail: str


ERRORS = {code: {"model": ErrorDetail} for code in (400, 403, 409, 413, 422, 429, 507)}


def _check_same_origin(request: Request) -> None:
    """Refuse cross-site form posts (CSRF): Origin must be this page's scheme, host and port."""
    check_same_origin(request)


def _rate_limit(request: Request, limiter: RateLimiter) -> None:
    """Per-client token bucket (the peer address: no proxy header is trusted)."""
    wait = limiter.acquire(client_address(request.client.host if request.client else None))
    if wait > 0:
        retry = max(1, math.ceil(wait - 1e-6))
        raise HTTPException(
            429,
            f"too many uploads from your address: at most {limiter.rate * 60:g} per minute "
            f"(bursts of {limiter.burst}); try again in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise HTTPException(
            400,
            f"the {IDEMPOTENCY_KEY_HEADER} header must be 16 to 64 characters from A-Z a-z 0-9 _ - "
            "(a random value the page keeps until it has the answer)",
        )
    return key


async def _read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{what} is larger than the {limit}-byte limit")
    return data


def _field(form, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPException(400, f"{name!r} must be a text field, not a file")
    return value  # exact: the documented values only, no case or space folding


@router.post(
    "",
    status_code=201,
    response_model=UploadCreated,
    summary="Contribute a labelled face crop",
    operation_id=CREATE_OPERATION_ID,
    responses=ERRORS,  # descriptions, request body, limits, links: upload_openapi.document
)
async def create_upload(
    request: Request, settings: SettingsDep, store: StoreDep, limiter: UploadLimiterDep
) -> UploadCreated:
    _check_same_origin(request)  # first: a cross-site page cannot spend the victim's rate budget
    _rate_limit(request, limiter)
    key = _idempotency_key(request)
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise HTTPException(
            400, "send the upload as multipart/form-data (fields crop, label, consent)"
        )
    try:
        form = await request.form(max_files=2, max_fields=8, max_part_size=MAX_FIELD_BYTES)
    except MultiPartException as err:
        raise HTTPException(400, f"malformed multipart form: {err.message}") from err
    except StarletteHTTPException as err:  # Starlette reports multipart errors as 400s
        raise HTTPException(400, f"malformed multipart form: {err.detail}") from err
    except ClientDisconnect as err:
        raise HTTPException(400, "the upload was interrupted") from err
    try:
        unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
        if unknown:
            raise HTTPException(
                400,
                f"unknown form field {unknown[0][:40]!r}; the fields are: {', '.join(FORM_FIELDS)}",
            )
        crop_file = form.get("crop")
        if not isinstance(crop_file, UploadFile):
            raise HTTPException(422, "the 'crop' file field is required")
        label = _field(form, "label")
        if not label:
            raise HTTPException(
                422, f"the 'label' field is required; use one of: {', '.join(LABELS)}"
            )
        if label not in LABELS:
            raise HTTPException(
                422, f"unknown label {label[:40]!r}; use one of: {', '.join(LABELS)}"
            )
        consent = _field(form, "consent")
        if consent not in CONSENT_YES:
            raise HTTPException(
                400,
                "consent is required: send consent=true to confirm the person agrees to donate "
                "this photo for training",
            )
        source = _field(form, "source")
        if source is not None and source not in SOURCES:
            raise HTTPException(422, f"source must be one of: {', '.join(sorted(SOURCES))}")
        original_file = form.get("original")
        if original_file is not None and not isinstance(original_file, UploadFile):
            if original_file.strip():
                raise HTTPException(400, "'original' must be a file")
            original_file = None

        limit = settings.max_upload_bytes
        crop_bytes = await _read_limited(crop_file, limit, "the crop")
        original_bytes = None
        if original_file is not None:
            original_bytes = await _read_limited(original_file, limit, "the original")
            if not original_bytes:  # an empty optional file input is "not given"
                original_bytes = None
    finally:
        await form.close()

    def work():
        try:
            crop, original = _clean(crop_bytes, original_bytes, settings)
        except ImageRejected as err:
            raise HTTPException(err.status_code, str(err)) from err
        try:
            return store.add(
                crop,
                label,
                consent=True,
                source=source,
                original=original,
                key=key,
                quota=Quota(settings.custom_max_bytes, settings.custom_max_files),
            )
        except UploadError as err:
            raise HTTPException(err.status_code, str(err)) from err

    stored = await run_in_threadpool(work)
    return UploadCreated(
        id=stored.id,
        label=stored.label,
        sha256=stored.sha256,
        deletion_token=stored.deletion_token,
        duplicate=stored.duplicate,
        resent=stored.resent,
    )


def _clean(crop_bytes: bytes, original_bytes: bytes | None, settings):
    """Decode + re-encode both images within the decode memory budget (raises ImageRejected).

    Both headers are checked first (cheap, nothing decoded); the memory they announce is then
    reserved in one step, so a request never holds part of the budget while waiting for more.
    """
    crop_side = min(settings.max_crop_side, settings.max_image_side)
    need = probe(
        crop_bytes,
        what="the crop",
        min_side=settings.min_image_side,
        max_side=crop_side,
        max_pixels=None,
    ).decode_bytes
    if original_bytes is not None:
        need += probe(
            original_bytes,
            what="the original",
            min_side=1,
            max_side=settings.max_image_side,
            max_pixels=settings.max_original_pixels,
        ).decode_bytes
    budget = decode_budget(settings)
    try:
        with budget.reserve(need, timeout=settings.decode_wait_seconds):
            crop = clean_crop(crop_bytes, min_side=settings.min_image_side, max_side=crop_side)
            original = (
                clean_original(
                    original_bytes,
                    max_side=settings.max_image_side,
                    max_pixels=settings.max_original_pixels,
                )
                if original_bytes is not None
                else None
            )
    except BudgetTooSmall as err:
        raise ImageRejected(
            f"these images need about {need / 2**20:.0f} MiB of memory to decode; this server "
            f"decodes at most {budget.capacity / 2**20:.0f} MiB at a time",
            413,
        ) from err
    except BudgetBusy as err:
        raise HTTPException(
            503,
            "the server is busy decoding other uploads; try again in a few seconds",
            headers={"Retry-After": "5"},
        ) from err
    return crop, original


@router.get("/stats", response_model=UploadStats, summary="How many crops per label (no images)")
def upload_stats(store: StoreDep) -> UploadStats:
    counts = store.stats()
    return UploadStats(total=sum(counts.values()), labels=counts)


@router.delete(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    summary="Withdraw a contribution",
    description="Withdraws the contribution identified by its deletion token; the image files and row "
    "are removed when no other contribution of the same image remains.",
    operation_id=DELETE_OPERATION_ID,
    responses={403: {"model": ErrorDetail}, 404: {"model": ErrorDetail}},
)
def delete_upload(
    upload_id: str,
    store: StoreDep,
    x_deletion_token: Annotated[
        str | None, Header(description="The deletion_token returned by POST /api/uploads.")
    ] = None,
) -> Response:
    try:
        store.delete(upload_id, x_deletion_token)
    except UploadError as err:
        raise HTTPException(err.status_code, str(err)) from err
    return Response(status_code=204)
