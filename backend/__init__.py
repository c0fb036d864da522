"""fer-hybrid web server: serves the on-device page and models, collects consented uploads.

Never imports TensorFlow/Keras (inference runs in the browser). Entry points:
`backend.app.create_app` (the FastAPI app) and `backend.cli.serve` (`fer-hybrid serve`).
"""
