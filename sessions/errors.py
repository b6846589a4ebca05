"""The one exception family of the edit history.

Owns the messages users see when they ask for something the history cannot do
(undo at a root, an unknown #12). Knows nothing of where the message is shown.
"""


class HistoryError(Exception):
    """A failure whose message can be shown to a user as is."""


class NotFound(HistoryError):
    """A conversation, node or job that does not exist (or is not the caller's)."""


class NothingToUndo(HistoryError):
    pass


class NothingToRedo(HistoryError):
    pass


class BadImage(HistoryError):
    """Bytes that are not an image this store can keep."""


class BlobCorrupted(HistoryError):
    """A stored file no longer matches its hash: it was changed or damaged on disk."""


class JobStateError(HistoryError):
    """A job asked to move to a state it cannot reach from where it is."""
