{{/* The chart name, or nameOverride. */}}
{{- define "eventwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, or the release name (+ "-eventwire" unless it contains it). */}}
{{- define "eventwire.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eventwire.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "eventwire.labels" -}}
helm.sh/chart: {{ include "eventwire.chart" . }}
app.kubernetes.io/name: {{ include "eventwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventwire
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the CRDs (cluster-wide, shared by every release). */}}
{{- define "eventwire.crdLabels" -}}
{{ include "eventwire.labels" . }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller"). */}}
{{- define "eventwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventwire.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component. */}}
{{- define "eventwire.componentLabels" -}}
{{ include "eventwire.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount name of a component. */}}
{{- define "eventwire.serviceAccountName" -}}
{{- $v := index .ctx.Values .component -}}
{{- if $v.serviceAccount.create }}
{{- default (printf "%s-%s" (include "eventwire.fullname" .ctx) .component) $v.serviceAccount.name }}
{{- else }}
{{- default "default" $v.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eventwire.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The NATS URL every component uses. */}}
{{- define "eventwire.natsUrl" -}}
{{- if .Values.nats.url }}
{{- .Values.nats.url }}
{{- else if .Values.natsServer.enabled }}
{{- printf "nats://%s-nats.%s.svc:4222" (include "eventwire.fullname" .) .Release.Namespace }}
{{- else }}
{{- fail "nats.url is required when natsServer.enabled is false" }}
{{- end }}
{{- end }}

{{- define "eventwire.natsAuthMountPath" -}}/etc/eventwire/nats/auth{{- end }}
{{- define "eventwire.natsTlsMountPath" -}}/etc/eventwire/nats/tls{{- end }}

{{/* NATS environment variables, shared by every component. */}}
{{- define "eventwire.natsEnv" -}}
- name: EVENTWIRE_NATS_URL
  value: {{ include "eventwire.natsUrl" . | quote }}
{{- $auth := .Values.nats.auth }}
{{- $dir := include "eventwire.natsAuthMountPath" . }}
{{- if and (ne $auth.type "none") (not $auth.secretName) }}
{{- fail "nats.auth.secretName is required when nats.auth.type is not none" }}
{{- end }}
{{- if eq $auth.type "creds" }}
- name: EVENTWIRE_NATS_CREDS_FILE
  value: {{ printf "%s/%s" $dir $auth.credsKey | quote }}
{{- else if eq $auth.type "nkey" }}
- name: EVENTWIRE_NATS_NKEY_SEED_FILE
  value: {{ printf "%s/%s" $dir $auth.nkeySeedKey | quote }}
{{- else if eq $auth.type "token" }}
- name: EVENTWIRE_NATS_TOKEN_FILE
  value: {{ printf "%s/%s" $dir $auth.tokenKey | quote }}
{{- else if eq $auth.type "userPassword" }}
{{- if not $auth.user }}
{{- fail "nats.auth.user is required when nats.auth.type is userPassword" }}
{{- end }}
- name: EVENTWIRE_NATS_USER
  value: {{ $auth.user | quote }}
- name: EVENTWIRE_NATS_PASSWORD_FILE
  value: {{ printf "%s/%s" $dir $auth.passwordKey | quote }}
{{- end }}
{{- $tls := .Values.nats.tls }}
{{- if $tls.enabled }}
{{- if not $tls.secretName }}
{{- fail "nats.tls.secretName is required when nats.tls.enabled is true" }}
{{- end }}
{{- $tdir := include "eventwire.natsTlsMountPath" . }}
- name: EVENTWIRE_NATS_TLS_CA_FILE
  value: {{ printf "%s/%s" $tdir $tls.caKey | quote }}
{{- if $tls.clientCert }}
- name: EVENTWIRE_NATS_TLS_CERT_FILE
  value: {{ printf "%s/%s" $tdir $tls.certKey | quote }}
- name: EVENTWIRE_NATS_TLS_KEY_FILE
  value: {{ printf "%s/%s" $tdir $tls.keyKey | quote }}
{{- end }}
{{- end }}
- name: EVENTWIRE_LOG_LEVEL
  value: {{ .Values.global.logLevel | quote }}
{{- end }}

{{/* Volumes with the NATS Secrets, and a writable /tmp (the root filesystem is read-only). */}}
{{- define "eventwire.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if ne .Values.nats.auth.type "none" }}
- name: nats-auth
  secret:
    secretName: {{ .Values.nats.auth.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ .Values.nats.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "eventwire.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if ne .Values.nats.auth.type "none" }}
- name: nats-auth
  mountPath: {{ include "eventwire.natsAuthMountPath" . }}
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls
  mountPath: {{ include "eventwire.natsTlsMountPath" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the components: (dict "ctx" $ "component" "controller"). */}}
{{- define "eventwire.podCommon" -}}
{{- $v := index .ctx.Values .component -}}
serviceAccountName: {{ include "eventwire.serviceAccountName" . }}
automountServiceAccountToken: true
enableServiceLinks: false
securityContext:
  {{- toYaml .ctx.Values.global.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $v.topologySpreadConstraints }}
  - {{- toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" (include "eventwire.selectorLabels" $ | fromYaml)))) | nindent 4 }}
  {{- end }}
{{- end }}
volumes:
  {{- include "eventwire.volumes" .ctx | nindent 2 }}
{{- end }}

{{/* A PodDisruptionBudget spec's disruption field. */}}
{{- define "eventwire.pdbBudget" -}}
{{- if ne (toString .minAvailable) "" }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end }}

{{/* The Service name of the ingress. */}}
{{- define "eventwire.ingressServiceName" -}}
{{ include "eventwire.fullname" . }}-ingress
{{- end }}
