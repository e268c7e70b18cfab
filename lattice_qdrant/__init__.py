"""lattice-qdrant: move a live Qdrant collection from one embedding model to another.

Wrap your own ``QdrantClient`` and migrate a collection in place, with zero downtime, no lost writes and a
safe way back::

    from qdrant_client import QdrantClient
    import lattice_qdrant as lq

    client = lq.wrap(QdrantClient(path="./qdrant"))
    migration = client.plan("docs", source=old_spec, target=new_spec, source_vector="old")
    migration.start()        # target named vector added, writes go to both vectors
    ...                      # backfill
    migration.cutover()      # queries use the target vector; the rollback window opens
    migration.finalize()     # after the window: the source vector is dropped
"""

from .aclient import AsyncLatticeClient, AsyncMigration, wrap
from .calibration import ScoreCalibration, ScoreThresholdWarning
from .client import LatticeClient
from .coordinator import Migration, Routing, Snapshot, plan_migration
from .embedders import Embedder, EmbedderSettings, HashEmbedder, SentenceTransformerEmbedder, embedder_for
from .errors import (
    AsyncClientError,
    CalibrationError,
    CollectionNotFoundError,
    ConcurrentTransitionError,
    ConfigError,
    EmbedderError,
    IndexConflictError,
    InPlaceUnsupportedError,
    InvalidTransitionError,
    LatticeError,
    MigrationError,
    MigrationExistsError,
    MigrationNotFoundError,
    MissingDependencyError,
    ModelConflictError,
    ModelError,
    ModelNotFoundError,
    PlanError,
    PointNotFoundError,
    ProbeError,
    QualityGateError,
    ReembedCancelRefusedError,
    ReembedIncompleteError,
    RollbackWindowOpenError,
    ScoreThresholdError,
    ServerVersionError,
    ShardMethodError,
    StorageFullError,
    StoreError,
    StrictModeError,
    TextFieldError,
    ThresholdNotMetError,
    TransientStoreError,
    TransitionError,
    UnnamedVectorError,
    UploadRejectedError,
    VectorConflictError,
    VectorNotFoundError,
    VectorValidationError,
)
from .plan import MigrationPlan, Strategy
from .registry import ModelRegistry
from .spec import Distance, ModelSpec
from .state import MigrationState, Phase, Policy, QueryRoute, Status, WriteRoute
from .store import Coverage, RetryPolicy, Store

__version__ = "0.1.0"

__all__ = [
    "AsyncClientError",
    "AsyncLatticeClient",
    "AsyncMigration",
    "CalibrationError",
    "CollectionNotFoundError",
    "ConcurrentTransitionError",
    "ConfigError",
    "Coverage",
    "Distance",
    "Embedder",
    "EmbedderError",
    "EmbedderSettings",
    "HashEmbedder",
    "InPlaceUnsupportedError",
    "IndexConflictError",
    "InvalidTransitionError",
    "LatticeClient",
    "LatticeError",
    "Migration",
    "MigrationError",
    "MigrationExistsError",
    "MigrationNotFoundError",
    "MigrationPlan",
    "MigrationState",
    "MissingDependencyError",
    "ModelConflictError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelSpec",
    "Phase",
    "PlanError",
    "PointNotFoundError",
    "Policy",
    "ProbeError",
    "QualityGateError",
    "QueryRoute",
    "ReembedCancelRefusedError",
    "ReembedIncompleteError",
    "RetryPolicy",
    "RollbackWindowOpenError",
    "Routing",
    "ScoreCalibration",
    "ScoreThresholdError",
    "ScoreThresholdWarning",
    "SentenceTransformerEmbedder",
    "ServerVersionError",
    "ShardMethodError",
    "Snapshot",
    "Status",
    "StorageFullError",
    "Store",
    "StoreError",
    "Strategy",
    "StrictModeError",
    "TextFieldError",
    "ThresholdNotMetError",
    "TransientStoreError",
    "TransitionError",
    "UnnamedVectorError",
    "UploadRejectedError",
    "VectorConflictError",
    "VectorNotFoundError",
    "VectorValidationError",
    "WriteRoute",
    "__version__",
    "embedder_for",
    "plan_migration",
    "wrap",
]
