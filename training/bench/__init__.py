"""`fer-hybrid bench`: our page against Human and face-api.js, in one run on one machine.

peers.py (pinned npm packages into a user cache), video.py (fake-camera Y4M files), browser.py
(headless Chromium), servers.py (the real backend as a subprocess, a static server for the peer
harness pages), harness/ (the peers' pages), latency.py, labels.py, accuracy.py, report.py.
"""
