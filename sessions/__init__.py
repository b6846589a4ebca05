"""The edit history: conversations, immutable image nodes, a movable head, jobs, blobs.

Git is the model. Nothing here imports chainlit or torch; callers hand in PIL images
or bytes and get plain frozen dataclasses back.
"""

from .blobs import BlobStore
from .errors import (
    BadImage,
    BlobCorrupted,
    HistoryError,
    JobStateError,
    NotFound,
    NothingToRedo,
    NothingToUndo,
)
from .export import read_recipe
from .models import Conversation, Job, Node
from .store import Store

__all__ = [
    "BadImage", "BlobCorrupted", "BlobStore", "Conversation", "HistoryError", "Job",
    "JobStateError", "Node", "NotFound", "NothingToRedo", "NothingToUndo", "Store",
    "read_recipe",
]
