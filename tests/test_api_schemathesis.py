"""Schemathesis against the app: every operation, all checks, plus the stateful run that follows
the OpenAPI link from POST /api/uploads (201) to DELETE /api/uploads/{id}. Bounded (few examples,
derandomized) and in-process (ASGI, nothing leaves the machine).

Only the uploads contract is in scope for the operation tests; the pages and static files are
covered elsewhere. A valid `format: binary` here is an image the server accepts (the field
descriptions say which), so positive cases are real images and must be accepted.
"""

from __future__ import annotations

import io
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.formats import unregister_string_format
from test_backend_helpers import make_settings

from backend.app import create_app

pytestmark = pytest.mark.slow

# Explicit, so changes elsewhere (trusted hosts, header or body limits) are visible here: the
# ASGI client sends Host "testserver"; no rate limit or quota gets in the way of a bounded run.
TEST_SETTINGS = dict(
    max_upload_bytes=200_000,
    max_image_side=512,
    min_image_side=16,
    uploads_per_minute=0,
    upload_burst=1,
)
RUN = settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _image(fmt: str, width: int, height: int, seed: int) -> bytes:
    import numpy as np

    arr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def images(spec: dict) -> st.SearchStrategy[bytes]:
    """Images with sides every file field of the document accepts (its x-image-min-side and
    x-image-max-side: JSON Schema cannot say it), kept small so that runs stay fast."""
    body = spec["paths"]["/api/uploads"]["post"]["requestBody"]
    fields = body["content"]["multipart/form-data"]["schema"]["properties"]
    files = [f for f in fields.values() if f.get("format") == "binary"]
    low = max(f["x-image-min-side"] for f in files)
    high = min(48, *(f["x-image-max-side"] for f in files))
    return st.builds(
        _image,
        st.sampled_from(["PNG", "JPEG", "WEBP"]),
        st.integers(low, high),
        st.integers(low, high),
        st.integers(0, 2**16),
    )


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, repo_root):
    app = create_app(
        make_settings(
            tmp_path_factory.mktemp("st"),
            web_dir=repo_root / "web",
            models_dir=repo_root / "models",
            **TEST_SETTINGS,
        )
    )
    schemathesis.openapi.format("binary", images(app.openapi()))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema
    unregister_string_format("binary")


lazy = schemathesis.pytest.from_fixture("api_schema")


@lazy.parametrize()
@RUN
def test_uploads_api_conforms(case):
    case.call_and_validate()


def test_stateful_links_post_then_delete(api_schema):
    seen: list[tuple[str, int]] = []

    class Workflow(api_schema.as_state_machine()):
        def after_call(self, response, case):
            super().after_call(response, case)
            seen.append((case.method.upper(), response.status_code))

    start = time.monotonic()
    Workflow.run(settings=settings(RUN, max_examples=15, stateful_step_count=4))
    assert ("POST", 201) in seen and ("DELETE", 204) in seen, seen  # the link was followed
    assert time.monotonic() - start < 120
