"""What POST/DELETE /api/uploads promise, in one place: the OpenAPI text for both operations.

The document is generated per app from its `Settings` (`install(app, settings)` wraps
`app.openapi`), so every limit it states is the number that app enforces. The handlers in
routers/uploads.py import the accepted values from here (consent, source, key pattern), so the
schema and the checks cannot drift apart. tests/test_api_contract.py checks the statements and
tests/test_api_schemathesis.py checks them against the running app.

Image validation (backend/images.py, backend/decode_budget.py) is described in `_limits`,
`_post_errors` and the field descriptions; the transport answers (trusted Host 400, header
limits 431, head timeout 408) in `_transport_errors`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .images import FREE_PIXELS, MAX_PIXELS_PER_BYTE_LOSSLESS, MAX_PIXELS_PER_BYTE_LOSSY
from .settings import Settings
from .storage import IDEMPOTENCY_KEY

CONSENT_VALUES = ("true", "on", "1", "yes")
SOURCES = ("camera", "file")
FORM_FIELDS = ("crop", "label", "consent", "original", "source")  # any other field: 400
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = IDEMPOTENCY_KEY.pattern  # the store checks keys against it too
DELETION_TOKEN_HEADER = "X-Deletion-Token"
#: Vendor keywords on the form's file fields: the smallest and largest side accepted (pixels).
IMAGE_MIN_SIDE = "x-image-min-side"
IMAGE_MAX_SIDE = "x-image-max-side"
CREATE_OPERATION_ID = "create_upload"
DELETE_OPERATION_ID = "delete_upload"
SAME_ORIGIN = (
    "Same-origin only: a POST whose `Origin` header is not exactly this page's scheme, host and "
    "port (another site, `null`, http vs https), or whose `Sec-Fetch-Site` is not "
    "`same-origin`/`none`, is refused with 403 before the body is read; the upload page of this "
    "server is the intended client."
)
ERROR_REF = {"$ref": "#/components/schemas/ErrorDetail"}
ERROR_SCHEMA = {
    "title": "ErrorDetail",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"title": "Detail", "type": "string"}},
}


def _limits(settings: Settings) -> dict[str, int | float]:
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_request_bytes": settings.max_request_bytes,
        "min_image_side": settings.min_image_side,
        "max_image_side": settings.max_image_side,
        "max_crop_side": settings.max_crop_side,
        "max_original_pixels": settings.max_original_pixels,
        "decode_memory_bytes": settings.decode_memory_bytes,
        "decode_wait_seconds": settings.decode_wait_seconds,
        "uploads_per_minute": settings.uploads_per_minute,
        "upload_burst": settings.upload_burst,
        "custom_max_bytes": settings.custom_max_bytes,
        "custom_max_files": settings.custom_max_files,
        "max_header_bytes": settings.max_header_bytes,
        "max_header_count": settings.max_header_count,
    }


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _retry_after(description: str) -> dict[str, Any]:
    return {
        "Retry-After": {"description": description, "schema": {"type": "integer", "minimum": 1}}
    }


def _request_body(s: Settings) -> dict[str, Any]:
    image_rule = (
        f"at most {s.max_upload_bytes} bytes; PNG, JPEG or WebP, decided from its bytes (not its "
        "name or Content-Type) and fully decoded; refused when it holds fewer bytes than its "
        "header's size needs, when its data ends early (also a JPEG cut short, whatever "
        "segments follow the cut), or when more than 90 % of its pixels are one exact colour; "
        f"{_paying_rule()}"
    )
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["crop", "label", "consent"],
                    "additionalProperties": False,  # other fields: 400
                    "properties": {
                        "crop": {
                            "type": "string",
                            "format": "binary",
                            # JSON Schema has no keyword for an image's sides: stated here
                            # for clients and for tests/test_api_schemathesis.py's generator.
                            IMAGE_MIN_SIDE: s.min_image_side,
                            IMAGE_MAX_SIDE: min(s.max_crop_side, s.max_image_side),
                            "description": f"The aligned face crop: {image_rule}; each side "
                            f"{s.min_image_side} to {s.max_crop_side} pixels. Stored re-encoded "
                            "as PNG, without metadata.",
                        },
                        "label": {"type": "string", "enum": _labels()},
                        "consent": {
                            "type": "string",
                            "enum": list(CONSENT_VALUES),
                            "description": "The person agrees to donate the photo for training. "
                            "Exactly one of these values; anything else (also empty) is a 400.",
                        },
                        "original": {
                            "type": "string",
                            "format": "binary",
                            IMAGE_MIN_SIDE: 1,
                            IMAGE_MAX_SIDE: s.max_image_side,
                            "description": f"Optional full photo the crop was taken from: "
                            f"{image_rule}; each side at most {s.max_image_side} pixels and at "
                            f"most {s.max_original_pixels} pixels in all. Stored as a JPEG "
                            "without metadata: quality 90 (a JPEG sent at a lower quality keeps "
                            "its own), else the first of 85, 70, 50, 30, 10 that takes at most "
                            "1.5 times the bytes sent (413 if none does). An empty file part "
                            "counts as not sent.",
                        },
                        "source": {"type": "string", "enum": list(SOURCES)},
                    },
                }
            }
        },
    }


def _paying_rule() -> str:
    return (
        "refused with 413 before any pixel is decoded when it does not pay for its pixels in "
        f"bytes: beyond the first {FREE_PIXELS} pixels, at most "
        f"{MAX_PIXELS_PER_BYTE_LOSSLESS} pixels a byte for a lossless file (PNG, lossless WebP) "
        f"and {MAX_PIXELS_PER_BYTE_LOSSY} for a lossy one (JPEG, lossy WebP)"
    )


def _labels() -> list[str]:
    from contract import LABELS

    return list(LABELS)


def _transport_errors(s: Settings) -> dict[str, dict[str, Any]]:
    """Answers of the middleware in front of every route (backend/hosts.py, middleware.py)."""
    return {
        "400": _error("The Host header is not one of this server's names (trusted hosts)."),
        "408": _error(
            f"`fer-hybrid serve` only: the request line and headers were not complete within "
            f"{s.header_timeout_seconds:g} s (the connection is then closed)."
        ),
        "431": _error(
            f"Request headers over {s.max_header_bytes} bytes in all, or more than "
            f"{s.max_header_count} of them."
        ),
    }


def _post_errors(s: Settings) -> dict[str, dict[str, Any]]:
    return {
        "400": _error(
            "Not an image, corrupt or truncated, too small, no or wrong consent, a form field "
            "that is not documented, malformed form or Idempotency-Key; or a Host header that "
            "is not one of this server's names. An image is also refused when it holds fewer "
            "bytes than its header's size needs, when its data ends early, or when it is mostly "
            "one flat colour."
        ),
        "403": _error(
            "Cross-origin post: " + SAME_ORIGIN + " Detail: 'uploads are only accepted from this "
            "server's own pages'."
        ),
        "409": _error(
            "The same image is already stored with another label, or the Idempotency-Key was "
            "used for another image, label or original."
        ),
        "413": _error(
            f"A file over {s.max_upload_bytes} bytes, a request body over "
            f"{s.max_request_bytes} bytes, a crop side over {s.max_crop_side} pixels, an "
            f"original side over {s.max_image_side} pixels or over {s.max_original_pixels} "
            f"pixels in all, an image with too few bytes for its pixels ({_paying_rule()}), "
            f"an image that could never decode within the server's "
            f"{s.decode_memory_bytes}-byte decode memory, or a stored original that would "
            "take far more bytes than were sent."
        ),
        "422": _error("Unknown label or source, or a missing crop or label field."),
        "429": _error(
            f"Too many uploads from this client address: {s.uploads_per_minute:g} per minute, in "
            f"bursts of up to {s.upload_burst}. Nothing was read or stored.",
            headers=_retry_after("Seconds until the next upload from this address is accepted."),
        ),
        "507": _error(
            f"Storage quota reached: the store keeps at most {s.custom_max_bytes} bytes in "
            f"{s.custom_max_files} files (crops + originals) and this upload would go over it. "
            "Nothing was stored; duplicates and re-sends, which add no file, are still accepted."
        ),
        "503": _error(
            f"The server is busy decoding other uploads: this one waited "
            f"{s.decode_wait_seconds:g} s for decode memory. Nothing was stored; try again.",
            headers=_retry_after("Seconds to wait before sending again."),
        ),
        "408": _transport_errors(s)["408"],
        "431": _transport_errors(s)["431"],
    }


def _post_description(s: Settings) -> str:
    return (
        "Validates and stores a face crop (re-encoded as PNG, metadata stripped) under "
        "`<custom_dir>/<label>/<sha256>.png`, with the optional original in "
        "`<custom_dir>/originals/`.\n\n"
        f"**{SAME_ORIGIN}**\n\n"
        f"Limits: files up to {s.max_upload_bytes} bytes, request body up to "
        f"{s.max_request_bytes} bytes, crop sides {s.min_image_side} to {s.max_crop_side} "
        f"pixels, originals up to {s.max_image_side} pixels a side and {s.max_original_pixels} "
        f"pixels (413 / 400); decoding shares {s.decode_memory_bytes} bytes of memory (503 "
        f"after waiting {s.decode_wait_seconds:g} s); {s.uploads_per_minute:g} per minute per "
        f"client address with bursts of {s.upload_burst} (429 with Retry-After); storage quota "
        f"{s.custom_max_bytes} bytes in {s.custom_max_files} files (507); request headers up to "
        f"{s.max_header_bytes} bytes and {s.max_header_count} headers (431).\n\n"
        "Each successful POST is one contribution with its own deletion token (only its hash is "
        "stored). To make a retry safe, send an `Idempotency-Key` (16-64 random characters, kept "
        "by the client until it has the answer): if an earlier send with that key was stored but "
        "its answer was lost, the same crop, label and original sent with the same key get the "
        "same contribution back (`resent: true`) with a fresh deletion token, which replaces the "
        "one that was never delivered; nothing is stored twice."
    )


def document(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write the uploads contract into `spec` (FastAPI's generated document) and return it."""
    spec.setdefault("components", {}).setdefault("schemas", {})["ErrorDetail"] = ERROR_SCHEMA
    post = spec["paths"]["/api/uploads"]["post"]
    post["operationId"] = CREATE_OPERATION_ID
    post["description"] = _post_description(settings)
    post["x-upload-limits"] = _limits(settings)
    post["requestBody"] = _request_body(settings)
    post["parameters"] = [
        {
            "name": IDEMPOTENCY_KEY_HEADER,
            "in": "header",
            "required": False,
            "description": "Optional client-generated key of this contribution (keep it until "
            "the answer arrives; re-send with the same key after a lost answer). Only its sha256 "
            "is stored.",
            "schema": {
                "type": "string",
                "pattern": IDEMPOTENCY_KEY_PATTERN,
                "minLength": 16,
                "maxLength": 64,
            },
        }
    ]
    created = post["responses"]["201"]
    created["description"] = "Stored (or, with a known Idempotency-Key, stored earlier)."
    created["links"] = {
        "DeleteUpload": {
            "operationId": DELETE_OPERATION_ID,
            "description": "Withdraw this contribution with the id and deletion token just "
            "returned.",
            "parameters": {
                "path.upload_id": "$response.body#/id",
                f"header.{DELETION_TOKEN_HEADER}": "$response.body#/deletion_token",
            },
        }
    }
    post["responses"] = {"201": created, **_post_errors(settings)}

    delete = spec["paths"]["/api/uploads/{upload_id}"]["delete"]
    delete["operationId"] = DELETE_OPERATION_ID
    delete["parameters"] = [
        {
            "name": "upload_id",
            "in": "path",
            "required": True,
            "description": "The id returned by POST /api/uploads (32 hex digits).",
            "schema": {"type": "string"},
        },
        {
            "name": DELETION_TOKEN_HEADER,
            "in": "header",
            "required": True,
            "description": "The deletion_token returned by POST /api/uploads for this "
            "contribution (missing: 403).",
            "schema": {"type": "string"},
        },
    ]
    delete["responses"] = {
        "204": {"description": "Withdrawn; the files went with the last contribution."},
        "403": _error("Missing or wrong deletion token (checked before the id)."),
        "404": _error("No upload with this id."),
        **_transport_errors(settings),
    }
    return spec


def install(app: FastAPI, settings: Settings) -> None:
    """Make `app.openapi()` carry the uploads contract for these settings."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
