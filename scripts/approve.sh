#!/bin/sh
# Approve a change request with a signed decision, from a script or a cron job.
#
#   scripts/approve.sh <workflow-id> <approver> <key>
#
# Needs only `temporal` and `ssh-keygen` (OpenSSH 8.1+). <key> is a private key file, or a
# public key whose private half is in ssh-agent. The plan digest is read from the `status`
# query, and the signature is made over `signoff:approve:<workflow-id>:<plan digest>`, so the
# approval is for the plan that is waiting now and for nothing else. Connection settings come
# from the usual TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE environment (or the Temporal profile).
# Exits non-zero, with the workflow's reason on stderr, when the approval is refused.
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 <workflow-id> <approver> <key>" >&2
    exit 2
fi
workflow_id=$1
approver=$2
key=$3
temporal=${TEMPORAL:-temporal}

# The plan's digest: every "plan_digest" key of the status must name the same one (the plan's,
# and the decisions that named it). A quoted value inside a string is escaped and cannot match;
# a request var that happened to be called plan_digest and held another digest makes the
# script stop rather than guess which to sign.
digests=$("$temporal" workflow query --workflow-id "$workflow_id" --name status -o json |
    grep -o '"plan_digest": *"sha256:[0-9a-f]\{64\}"' | grep -o 'sha256:[0-9a-f]\{64\}' | sort -u) || true
if [ -z "$digests" ]; then
    echo "$workflow_id has no plan digest to approve (not planned yet?)" >&2
    exit 1
fi
if [ "$(printf '%s\n' "$digests" | wc -l)" -ne 1 ]; then
    echo "$workflow_id: the status names more than one plan digest; check it with signoff status" >&2
    exit 1
fi
digest=$digests

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s' "signoff:approve:$workflow_id:$digest" >"$tmp/message"
ssh-keygen -q -Y sign -n signoff -f "$key" <"$tmp/message" >"$tmp/signature"

json_string() { # stdin as the body of a JSON string: backslashes, quotes and newlines escaped
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk '{ printf "%s\\n", $0 }'
}
name=$(printf '%s\n' "$approver" | json_string)
signature=$(json_string <"$tmp/signature")
printf '{"approver": "%s", "plan_digest": "%s", "signature": "%s"}\n' \
    "${name%\\n}" "$digest" "$signature" >"$tmp/input.json"

echo "approving $workflow_id as $approver, plan $digest" >&2
"$temporal" workflow update execute --workflow-id "$workflow_id" --name approve --input-file "$tmp/input.json" >/dev/null
