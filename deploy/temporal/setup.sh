#!/bin/sh
# Makes a Temporal service ready for signoff: waits for its frontend, creates the namespace if
# it is missing (history of closed requests kept 30 days: their audit lives in PostgreSQL and
# git), and registers signoff's search attributes, which `signoff list` and
# `temporal workflow list --query` read. Safe to run again: an existing namespace is kept, and an
# attribute already registered with the same type is left as it is.
#
# It needs only the `temporal` CLI: TEMPORAL_ADDRESS (default temporal:7233) and
# TEMPORAL_NAMESPACE (default default) say where; for a secured service the CLI itself reads
# TEMPORAL_API_KEY or its TLS settings from the environment. compose.yml runs it in temporalio/admin-tools; elsewhere:
#   TEMPORAL_ADDRESS=temporal-frontend:7233 sh deploy/temporal/setup.sh
set -eu

address=${TEMPORAL_ADDRESS:-temporal:7233}
namespace=${TEMPORAL_NAMESPACE:-default}

retry() {
    # retry WHAT COMMAND...: up to 60 tries 2 s apart, as a fresh service takes a while to answer
    what=$1
    shift
    tries=1
    until "$@"; do
        if [ "$tries" -ge 60 ]; then
            echo "signoff setup: gave up waiting for $what" >&2
            return 1
        fi
        tries=$((tries + 1))
        sleep 2
    done
}

namespace_exists() {
    temporal operator namespace describe --address "$address" --namespace "$namespace" >/dev/null 2>&1 \
        || temporal operator namespace create --address "$address" --namespace "$namespace" --retention 720h
}

retry "the Temporal frontend at $address" temporal operator cluster health --address "$address"
retry "namespace $namespace" namespace_exists
# Exactly workflows/inbox.py SEARCH_ATTRIBUTES (tests/test_deploy.py runs this script and checks);
# workers also register missing ones at start, where their credentials allow it.
retry "the search attributes" temporal operator search-attribute create --address "$address" --namespace "$namespace" \
    --name SignoffPhase --type Keyword \
    --name SignoffRequester --type Keyword \
    --name SignoffServices --type KeywordList \
    --name SignoffApprovals --type Int \
    --name SignoffApprovalsNeeded --type Int \
    --name SignoffWaitingFor --type KeywordList
echo "signoff setup: namespace $namespace and its search attributes are ready on $address"
