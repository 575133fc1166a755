#!/bin/sh
# Creates Temporal's two PostgreSQL databases (temporal, temporal_visibility) and brings their
# schemas up to the version of the temporal-sql-tool it runs with. Safe to run on every start:
# an existing database is kept, and only missing schema versions are applied. compose.yml runs it
# in temporalio/admin-tools (same version as temporalio/server) before the server starts.
# Reads DB (postgres12), POSTGRES_SEEDS, DB_PORT, POSTGRES_USER and POSTGRES_PWD: the settings
# the server itself reads.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS: the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER: the PostgreSQL user}"
: "${POSTGRES_PWD:?POSTGRES_PWD: the PostgreSQL password}"
SQL_PASSWORD=$POSTGRES_PWD # read by temporal-sql-tool; not on its command line
export SQL_PASSWORD
schemas=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin "${DB:-postgres12}" --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" -u "$POSTGRES_USER" "$@"
}

tries=1
until nc -z -w 5 "$POSTGRES_SEEDS" "${DB_PORT:-5432}"; do
    if [ "$tries" -ge 60 ]; then
        echo "temporal schema: PostgreSQL at $POSTGRES_SEEDS:${DB_PORT:-5432} did not answer" >&2
        exit 1
    fi
    tries=$((tries + 1))
    sleep 2
done

for database in temporal temporal_visibility; do
    case $database in
        temporal) versions=$schemas/temporal/versioned ;;
        *) versions=$schemas/visibility/versioned ;;
    esac
    sql_tool --db "$database" create
    sql_tool --db "$database" setup-schema -v 0.0
    sql_tool --db "$database" update-schema -d "$versions"
done
echo "temporal schema: databases temporal and temporal_visibility are up to date"
