"""Bench (`fer-hybrid bench`): our page against Human and face-api.js, in one run on one
machine, through the real backend serving the exported `models/`. It imports `core` and `data`
(the split, the FER+ votes) and no later stage: our models are reached through the page.

peers.py (pinned npm packages into a user cache), video.py (fake-camera Y4M files), browser.py
(headless Chromium), servers.py (the real backend as a subprocess, a static server for the peer
harness pages), harness/ (the peers' pages), latency.py, labels.py, accuracy.py, report.py.
"""
