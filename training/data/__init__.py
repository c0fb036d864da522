"""Data: loaders for FER2013, CK+, JAFFE, class folders and the web app's uploads, the splits
(`load_splits`, `split_loader`), SMOTE, FER2013's FER+ votes and the agreement of predictions
with them (`ferplus`, `ferplus_agreement`), and a split loaded to measure on (`evaluation`). It
imports `core` only: every later stage reads data, data reads no stage.

Public API::

    from training.data import Dataset, load_splits
    splits = load_splits(data_dir=None, fer2013=None, aux=("ckplus", "jaffe"), sample=None, seed=0)
    splits["train"].x  # uint8 (N, 48, 48), .y int64 index into contract.LABELS, .source str

    from training.data.balance import smote       # smote(x, y, *, seed=0, k=5) -> (x, y)
    from training.data.packed import write_pack   # the `fer-hybrid data pack` format

Submodules import only numpy at module level (Pillow/tqdm/sklearn lazily or on use).
"""

from training.data.dataset import Dataset
from training.data.splits import AUX_SOURCES, default_data_dir, load_splits

__all__ = ["AUX_SOURCES", "Dataset", "default_data_dir", "load_splits"]
