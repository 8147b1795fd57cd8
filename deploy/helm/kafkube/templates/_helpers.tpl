{{/* Labels of one service's objects. */}}
{{- define "kafkube.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: kafkube
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels that select one service's pods. */}}
{{- define "kafkube.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}
