{{/* The chart's name. */}}
{{- define "vpcni.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name. */}}
{{- define "vpcni.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "vpcni.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "vpcni.labels" -}}
app.kubernetes.io/name: {{ include "vpcni.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The DaemonSet's selector. */}}
{{- define "vpcni.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpcni.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vpcni.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "vpcni.fullname" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{- define "vpcni.image" -}}
{{- if .Values.image.override -}}
{{ .Values.image.override }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "vpcni.initImage" -}}
{{- if .Values.init.image.override -}}
{{ .Values.init.image.override }}
{{- else -}}
{{ include "vpcni.image" . }}
{{- end -}}
{{- end -}}
