"""Python client for dcd, the data-centric debugging service.

    from dcd_client import Client, image_folder
    with Client("127.0.0.1:50051") as dcd:
        dcd.create_pool("photos", backbone="dino-vits16")
        dcd.ingest_folder("photos", "/data/photos")          # a server-side ImageFolder
        found = dcd.debug_set("photos", errors=["fail1.jpg", "fail2.jpg"], k=50)
        # Error samples by true label (folders named by class): implausible weak labels dropped.
        found = dcd.debug_set("photos", errors=image_folder("/data/failures"), k=50)
        paths = [item.key for item in found.items]
"""

from .client import (
    Client,
    Coverage,
    DcdError,
    DebugItem,
    DebugSet,
    Evaluation,
    Finding,
    Hit,
    IngestSummary,
    Item,
    ItemOutcome,
    Job,
    Key,
    Labelled,
    Pool,
    Review,
    SavedItem,
    SavedSet,
    SetDiff,
    image_folder,
)

__all__ = [
    "Client",
    "Coverage",
    "DcdError",
    "DebugItem",
    "DebugSet",
    "Evaluation",
    "Finding",
    "Hit",
    "IngestSummary",
    "Item",
    "ItemOutcome",
    "Job",
    "Key",
    "Labelled",
    "Pool",
    "Review",
    "SavedItem",
    "SavedSet",
    "SetDiff",
    "image_folder",
]
