import EcoWattStorage
import GRDB

/// SQLite's errors (a full disk is `SQLITE_FULL`, "database or disk is full") are the storage's, answered 503.
extension DatabaseError: StorageBackendError {}
