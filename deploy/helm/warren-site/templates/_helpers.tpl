{{/* Name of the chart's objects: the release name, plus the chart's if not in it. */}}
{{- define "warren-site.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select this release's agent pods (Deployment, NetworkPolicy, PDB). */}}
{{- define "warren-site.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "warren-site.labels" -}}
{{ include "warren-site.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret holding the site secret under the key `secret`. */}}
{{- define "warren-site.secretName" -}}
{{- .Values.site.existingSecret | default (include "warren-site.fullname" .) -}}
{{- end -}}
