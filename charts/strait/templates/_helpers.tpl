{{/*
Strait's objects have fixed names: strait join, strait status and the agent find one another
by them (the agent reads the Secret strait-system/strait-broker), so they are not derived
from the release name.
*/}}

{{/* strait.checkNamespace fails unless the release is installed in strait-system. */}}
{{- define "strait.checkNamespace" -}}
{{- if ne .Release.Namespace "strait-system" -}}
{{- fail (printf "namespace %q: install Strait in the namespace strait-system (helm --namespace strait-system), where strait join stores the broker credential the agent reads" .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* strait.labels are the labels of every object; pass (dict "root" $ "component" "agent"). */}}
{{- define "strait.labels" -}}
{{ include "strait.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: strait
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* strait.selectorLabels select one component's pods. */}}
{{- define "strait.selectorLabels" -}}
app.kubernetes.io/name: strait
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* strait.image is the image reference; the tag defaults to the chart's appVersion. */}}
{{- define "strait.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
strait.podSpecCommon renders what every Strait pod shares after its containers: scheduling
(the component's own, else the chart-wide one), pull secrets and the pod security context.
Pass (dict "root" $ "c" .Values.<component>).
*/}}
{{- define "strait.podSpecCommon" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- with (.c.nodeSelector | default .root.Values.nodeSelector) }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.c.tolerations | default .root.Values.tolerations) }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.c.affinity | default .root.Values.affinity) }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* strait.containerSecurityContext is every Strait container's. */}}
{{- define "strait.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* strait.podMetadata: the pod template's labels and annotations. Pass (dict "root" $ "component" "agent" "annotations" (dict ...)). */}}
{{- define "strait.podMetadata" -}}
labels:
  {{- include "strait.selectorLabels" . | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $ann := merge (dict) (.annotations | default dict) .root.Values.podAnnotations }}
{{- with $ann }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* strait.pdb renders a component's PodDisruptionBudget. Pass (dict "root" $ "component" "agent" "name" "strait-agent" "c" .Values.agent). */}}
{{- define "strait.pdb" -}}
{{- if and .c.podDisruptionBudget.enabled (gt (int .c.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "strait.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .c.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "strait.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
