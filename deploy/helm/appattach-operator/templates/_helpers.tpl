{{/*
The labels that select the controller's pods: the same as deploy/base, so an install of
either selects the same pods (a Deployment's selector cannot change).
*/}}
{{- define "appattach.selectorLabels" -}}
app.kubernetes.io/name: appattach-operator
app.kubernetes.io/component: controller
{{- end }}

{{/*
Helm's labels on every object (the Kustomize base has none of these).
*/}}
{{- define "appattach.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
The controller's environment for credential.method, as the binary reads it
(APPATTACH_AZURE_CREDENTIAL and the standard AZURE_* variables; README "Run against Azure").
"none" sets nothing: the controller's default, auto, picks by what the pod has.
*/}}
{{- define "appattach.credentialEnv" -}}
{{- $c := .Values.credential -}}
{{- if eq $c.method "workloadIdentity" }}
- name: APPATTACH_AZURE_CREDENTIAL
  value: workload-identity
{{- else if eq $c.method "clientSecret" }}
- name: APPATTACH_AZURE_CREDENTIAL
  value: client-secret
- name: AZURE_TENANT_ID
  value: {{ required "credential.method clientSecret needs azure.tenantId" .Values.azure.tenantId | quote }}
- name: AZURE_CLIENT_ID
  value: {{ required "credential.method clientSecret needs credential.clientId" $c.clientId | quote }}
- name: AZURE_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ required "credential.method clientSecret needs credential.clientSecret.existingSecret" $c.clientSecret.existingSecret }}
      key: {{ $c.clientSecret.key }}
{{- else if eq $c.method "managedIdentity" }}
- name: APPATTACH_AZURE_CREDENTIAL
  value: managed-identity
{{- with $c.clientId }}
- name: AZURE_CLIENT_ID
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
