#!/bin/bash
# The docker-compose broker's entrypoint: format the storage once, with the admin's SCRAM
# credential, then run Kafka. The password goes from the secret file into a 0600 Java
# argument file (printf is a shell builtin: no process carries it on its command line), which
# the Java launcher expands and which is deleted once the storage is formatted.
set -euo pipefail
umask 077
config=/opt/framestream/server.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    argfile=$(mktemp)
    trap 'rm -f "$argfile"' EXIT
    {
        printf '%s\n' kafka.tools.StorageTool format "--cluster-id=${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID}" --config "$config"
        printf -- '--add-scram=SCRAM-SHA-512=[name=admin,password=%s]\n' "$(< /run/secrets/kafka_admin_password)"
    } > "$argfile"
    java -cp '/opt/kafka/libs/*' "@$argfile"
    rm -f "$argfile"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
