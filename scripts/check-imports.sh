#!/usr/bin/env bash
# The storage seam (issue 17): only the SQLite module and its own tests import GRDB; everything else goes through the
# store protocols of EcoWattStorage (and DatabaseInspector for tests that look at rows).
set -euo pipefail
cd "$(dirname "$0")/.."
offenders=$(grep -rlE '^(@testable )?import GRDB' Sources Tests | grep -vE '^(Sources/EcoWattSQLite|Tests/EcoWattSQLiteTests)/' || true)
if [ -n "$offenders" ]; then
    echo "error: GRDB imported outside the SQLite module:" >&2
    echo "$offenders" >&2
    exit 1
fi
if grep -rlE '^(@testable )?import GRDB' Sources/EcoWattStorage >/dev/null 2>&1; then
    echo "error: EcoWattStorage must not import GRDB" >&2
    exit 1
fi
# The same for PostgreSQL (issue 22): postgres-nio only in EcoWattPostgres, and in the tests that run a database.
pg_offenders=$(grep -rlE '^(@testable )?import PostgresNIO' Sources Tests |
    grep -vE '^(Sources/EcoWattPostgres|Tests/EcoWattPostgresTests|Tests/EcoWattTestSupport)/' || true)
if [ -n "$pg_offenders" ]; then
    echo "error: PostgresNIO imported outside the PostgreSQL module:" >&2
    echo "$pg_offenders" >&2
    exit 1
fi
# A statement run for its effect goes through `execute`, which reads its rows to the end: PostgresNIO's `query` returns
# at the row description, and an error raised while the statement runs (a deadlock found while a locking SELECT waits)
# is lost when the rows are not read; the transaction's next statement then fails with 25P02 instead.
unread=$(grep -rnE '^\s*(_ = )?try\??\s+await [A-Za-z.]*\.query\(' Sources/EcoWattPostgres | grep -v '\.collect()' || true)
if [ -n "$unread" ]; then
    echo "error: a PostgreSQL query whose rows are not read (use execute, or read them):" >&2
    echo "$unread" >&2
    exit 1
fi
# Routes and services see the store protocols (and services, for routes), never the SQLite implementation: only the
# composition root and the operations that are about the SQLite file itself import EcoWattSQLite.
sqlite_users=$(grep -rlE '^import EcoWattSQLite' Sources/EcoWattServer/Routes Sources/EcoWattServer/Services Sources/EcoWattServer/Binding/DeviceBinding.swift Sources/EcoWattServer/Binding/BootMessages.swift || true)
if [ -n "$sqlite_users" ]; then
    echo "error: routes or services import EcoWattSQLite:" >&2
    echo "$sqlite_users" >&2
    exit 1
fi
if grep -rnE 'any (TelemetryStore|DeviceRegistryStore|CommandStore|ConfigStore|ReportStore|OTAStore|BindingStore)|Store\b.*: *SQLite' Sources/EcoWattServer/Routes >/dev/null; then
    echo "error: a route takes a store; routes call services" >&2
    exit 1
fi
echo "GRDB is imported only by EcoWattSQLite ($(grep -rlE '^import GRDB' Sources/EcoWattSQLite | wc -l) files) and its tests"
