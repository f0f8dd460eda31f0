{{/* Refuse values the relay itself would refuse at start, with the value's name. */}}
{{- define "relay.validateValues" -}}
{{- $protocol := .Values.kafka.securityProtocol -}}
{{- if not (has $protocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, not %q" $protocol) -}}
{{- end -}}
{{- if and (include "relay.kafkaSasl" .) (not (has .Values.kafka.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512"))) -}}
{{- fail (printf "kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q" .Values.kafka.sasl.mechanism) -}}
{{- end -}}
{{- if and (or (include "relay.kafkaCA" .) (include "relay.kafkaClientCert" .)) (not (hasSuffix "SSL" $protocol)) -}}
{{- fail (printf "kafka.tls.* is set but kafka.securityProtocol=%s does not use TLS (SSL or SASL_SSL)" $protocol) -}}
{{- end -}}
{{- if lt (int .Values.kafka.topicReplication) 1 -}}
{{- fail "kafka.topicReplication must be at least 1" -}}
{{- end -}}
{{- if and .Values.ingest.adminPort (eq (int .Values.ingest.adminPort) (int .Values.ingest.port)) -}}
{{- fail "ingest.adminPort must differ from ingest.port (null serves everything on ingest.port)" -}}
{{- end -}}
{{- end -}}
