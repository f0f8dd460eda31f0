{{/* Names */}}
{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "relay.component" (dict "root" $ "component" "ingest") -> <fullname>-ingest */}}
{{- define "relay.component" -}}
{{- printf "%s-%s" (include "relay.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels */}}
{{- define "relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: relay
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* "relay.selectorLabels" (dict "root" $ "component" "ingest") */}}
{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relay.componentLabels" -}}
{{ include "relay.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image: registry/repository, then @digest or :tag */}}
{{- define "relay.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* Secrets: the chart's own, or the user's existingSecret */}}
{{- define "relay.kafkaSecretName" -}}
{{- default (printf "%s-kafka" (include "relay.fullname" .)) .Values.kafka.existingSecret -}}
{{- end -}}
{{- define "relay.upstreamSecretName" -}}
{{- default (printf "%s-upstream" (include "relay.fullname" .)) .Values.upstream.existingSecret -}}
{{- end -}}
{{- define "relay.tenantsSecretName" -}}
{{- default (printf "%s-tenants" (include "relay.fullname" .)) .Values.tenants.existingSecret -}}
{{- end -}}
{{- define "relay.adminSecretName" -}}
{{- default (printf "%s-admin" (include "relay.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{- define "relay.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}
{{- define "relay.kafkaCA" -}}
{{- if or .Values.kafka.tls.caCert (and .Values.kafka.existingSecret .Values.kafka.tls.caFromSecret) }}true{{ end -}}
{{- end -}}
{{- define "relay.kafkaClientCert" -}}
{{- if or .Values.kafka.tls.clientCert (and .Values.kafka.existingSecret .Values.kafka.tls.clientCertFromSecret) }}true{{ end -}}
{{- end -}}
{{/* Whether the Kafka secret volume is needed at all */}}
{{- define "relay.kafkaFiles" -}}
{{- if or (include "relay.kafkaSasl" .) (include "relay.kafkaCA" .) (include "relay.kafkaClientCert" .) }}true{{ end -}}
{{- end -}}
{{- define "relay.upstreamCredentials" -}}
{{- if or .Values.upstream.existingSecret .Values.upstream.token }}true{{ end -}}
{{- end -}}
{{- define "relay.tenantsFile" -}}
{{- if or .Values.tenants.existingSecret .Values.tenants.file }}true{{ end -}}
{{- end -}}
{{- define "relay.adminToken" -}}
{{- if or .Values.admin.existingSecret .Values.admin.token }}true{{ end -}}
{{- end -}}

{{/* Environment both processes share: Kafka, topics, upstream, tenants, logging */}}
{{- define "relay.commonEnv" -}}
- name: RELAY_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
- name: RELAY_CONSUMER_GROUP
  value: {{ .Values.kafka.consumerGroup | quote }}
- name: RELAY_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: RELAY_TOPIC_PARTITIONS
  value: {{ .Values.kafka.topicPartitions | quote }}
- name: RELAY_TOPIC_REPLICATION
  value: {{ .Values.kafka.topicReplication | quote }}
- name: RELAY_DLQ_RETENTION_DAYS
  value: {{ .Values.kafka.dlqRetentionDays | quote }}
- name: RELAY_TOPIC_STRICT
  value: {{ .Values.kafka.topicStrict | quote }}
- name: RELAY_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: RELAY_KAFKA_CHECK_HOSTNAME
  value: {{ .Values.kafka.tls.checkHostname | quote }}
{{- if include "relay.kafkaSasl" . }}
- name: RELAY_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: RELAY_KAFKA_USERNAME_FILE
  value: /etc/relay/kafka/username
- name: RELAY_KAFKA_PASSWORD_FILE
  value: /etc/relay/kafka/password
{{- end }}
{{- if include "relay.kafkaCA" . }}
- name: RELAY_KAFKA_CA_FILE
  value: /etc/relay/kafka/ca.crt
{{- end }}
{{- if include "relay.kafkaClientCert" . }}
- name: RELAY_KAFKA_CERT_FILE
  value: /etc/relay/kafka/tls.crt
- name: RELAY_KAFKA_KEY_FILE
  value: /etc/relay/kafka/tls.key
{{- end }}
- name: RELAY_UPSTREAM_URL
  value: {{ .Values.upstream.url | quote }}
{{- if include "relay.upstreamCredentials" . }}
- name: RELAY_UPSTREAM_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "relay.upstreamSecretName" . }}
      key: token
- name: RELAY_UPSTREAM_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "relay.upstreamSecretName" . }}
      key: secret
{{- end }}
{{- if include "relay.tenantsFile" . }}
- name: RELAY_TENANTS_FILE
  value: /etc/relay/tenants/tenants.toml
{{- end }}
- name: RELAY_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Volumes both processes share */}}
{{- define "relay.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- if include "relay.kafkaFiles" . }}
- name: kafka-credentials
  secret:
    secretName: {{ include "relay.kafkaSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- if include "relay.tenantsFile" . }}
- name: tenants
  secret:
    secretName: {{ include "relay.tenantsSecretName" . }}
    defaultMode: 0440
    items:
      - key: tenants.toml
        path: tenants.toml
{{- end }}
{{- end -}}

{{- define "relay.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "relay.kafkaFiles" . }}
- name: kafka-credentials
  mountPath: /etc/relay/kafka
  readOnly: true
{{- end }}
{{- if include "relay.tenantsFile" . }}
- name: tenants
  mountPath: /etc/relay/tenants
  readOnly: true
{{- end }}
{{- end -}}

{{/* Spread replicas over nodes and zones unless the user gave constraints */}}
{{- define "relay.topologySpread" -}}
{{- $values := index .root.Values .component -}}
{{- if $values.topologySpreadConstraints }}
{{- toYaml $values.topologySpreadConstraints }}
{{- else -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "relay.selectorLabels" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "relay.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* A checksum of every chart-made Secret, so a credential change rolls the pods */}}
{{- define "relay.secretsChecksum" -}}
{{- include (print .Template.BasePath "/secrets.yaml") . | sha256sum -}}
{{- end -}}
