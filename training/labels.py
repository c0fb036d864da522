"""The seven FER2013 classes, in FER2013's own label order.

Every dataset is mapped onto this order; the manifest, the page and the upload
API all use it. Index i here is label i in the FER2013 CSV.
"""

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(LABELS)
