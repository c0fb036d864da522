#!/usr/bin/env bash
# Refresh web/vendor/ from the npm registry: exactly the pinned versions below,
# only the files the page needs, with each package's licence and a SHA256SUMS.
# Usage: bash web/scripts/vendor.sh      (needs node/npm; run from anywhere)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# The tfjs pin lives in backend/assets.py: the server writes the pages' tfjs paths from it.
TFJS="$(cd "$here/.." && python3 -c 'from backend.assets import TFJS_VERSION; print(TFJS_VERSION)')"
HUMAN=3.3.6
SWAGGER=5.35.0  # the API docs at /docs (FastAPI's default page loads the same package from a CDN)
REDOC=2.5.4     # the API docs at /redoc
vendor="$here/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch NAME@VERSION -> unpacked into $work/<dir>/package
  local spec=$1 dir=$2
  (cd "$work" && npm pack --silent "$spec" >/dev/null && mkdir -p "$dir" && tar xzf ./*.tgz -C "$dir" && rm ./*.tgz)
}

rm -rf "$vendor/tfjs-$TFJS" "$vendor/human-$HUMAN" "$vendor/swagger-ui-$SWAGGER" "$vendor/redoc-$REDOC"
mkdir -p "$vendor/tfjs-$TFJS" "$vendor/human-$HUMAN/models" "$vendor/swagger-ui-$SWAGGER" "$vendor/redoc-$REDOC"

# TensorFlow.js, split packages (core + converter + backends) instead of the
# full bundle: the page never needs tfjs-layers, which saves ~0.5 MB.
for pkg in core converter backend-cpu backend-webgl backend-wasm; do
  fetch "@tensorflow/tfjs-$pkg@$TFJS" "$pkg"
  cp "$work/$pkg/package/dist/tf-$pkg.es2017.min.js" "$vendor/tfjs-$TFJS/"
done
cp "$work/backend-wasm/package/dist/"tfjs-backend-wasm*.wasm "$vendor/tfjs-$TFJS/"
# The tfjs npm packages declare "license": "Apache-2.0" but ship no licence
# file; add the licence text (Debian's copy) with the copyright line.
{ echo "TensorFlow.js $TFJS (@tensorflow/tfjs-{core,converter,backend-cpu,backend-webgl,backend-wasm})"
  echo "Copyright Google LLC. Licensed under the Apache License, Version 2.0:"; echo
  cat /usr/share/common-licenses/Apache-2.0 2>/dev/null || echo "https://www.apache.org/licenses/LICENSE-2.0"
} > "$vendor/tfjs-$TFJS/LICENSE"

# BlazeFace weights (MediaPipe's model as converted and shipped by Human).
fetch "@vladmandic/human@$HUMAN" human
cp "$work/human/package/models/blazeface.json" "$work/human/package/models/blazeface.bin" "$vendor/human-$HUMAN/models/"
cp "$work/human/package/LICENSE" "$vendor/human-$HUMAN/LICENSE"

# API documentation pages, served by the app itself so /docs and /redoc work offline.
fetch "swagger-ui-dist@$SWAGGER" swagger
cp "$work/swagger/package/"{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css,LICENSE,NOTICE} \
   "$vendor/swagger-ui-$SWAGGER/"
fetch "redoc@$REDOC" redoc
cp "$work/redoc/package/bundles/"{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} \
   "$work/redoc/package/LICENSE" "$vendor/redoc-$REDOC/"

(cd "$vendor" && find . -type f ! -name SHA256SUMS ! -name README.md | sort | xargs sha256sum > SHA256SUMS)
echo "vendored into $vendor:"
(cd "$vendor" && du -ah . | sort -k2)
