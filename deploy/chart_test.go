package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/cloud-provider-baremetal"

// TestChartRendersTheBase: the chart with its default values renders exactly
// the kustomize base's objects, so both install paths give the same
// least-privilege RBAC, probes and capabilities (checked on the base by
// TestKustomizations).
func TestChartRendersTheBase(t *testing.T) {
	tool(t, "helm")
	chart, err := RenderChart(chartDir, "baremetal", "kube-system")
	if err != nil {
		t.Fatal(err)
	}
	base, err := Read("base")
	if err != nil {
		t.Fatal(err)
	}
	sameAs(t, "the chart", chart, "deploy/base", base)
}

// TestChartRendersTheExampleOverlay: the chart with the example overlay's
// settings as values renders the overlay's objects.
func TestChartRendersTheExampleOverlay(t *testing.T) {
	tool(t, "helm")
	chart, err := RenderChart(chartDir, "baremetal", "kube-system",
		"--set-file", "cloudConfig=overlays/example/cloud-config.yaml",
		"--set", "bgpPasswords.passwords.tor-a=change-me",
		"--set", "image.tag=v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := Read("overlays/example")
	if err != nil {
		t.Fatal(err)
	}
	sameAs(t, "the chart", chart, "deploy/overlays/example", overlay)
}

// TestChartValues: every documented value reaches the objects.
func TestChartValues(t *testing.T) {
	tool(t, "helm")
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
image: {repository: registry.example/baremetal, tag: v9.9.9, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
bgpPasswords: {secretName: peers, passwords: {tor-b: "s3cret"}}
ccm:
  namespace: cloud
  replicas: 3
  securePort: 10300
  extraArgs: [--concurrent-service-syncs=4]
  resources: {requests: {cpu: 100m}}
  tolerations: [{key: dedicated, operator: Exists}]
  nodeSelector: {role: infra}
agent:
  namespace: lb
  createNamespace: false
  healthPort: 9202
  metricsPort: 9201
  heartbeatPort: 7575
  resources: {limits: {memory: 1Gi}}
  tolerations: [{operator: Exists}]
  nodeSelector: {lb: "yes"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := RenderChart(chartDir, "baremetal", "cloud", "-f", values)
	if err != nil {
		t.Fatal(err)
	}
	m := index(t, objs)
	if m[key{"Namespace", "", agentNS}] != nil || m[key{"Namespace", "", "lb"}] != nil {
		t.Error("agent.createNamespace=false still renders a Namespace")
	}
	for _, k := range []key{
		{"ConfigMap", "cloud", "baremetal-cloud-config"}, {"ConfigMap", "lb", "baremetal-cloud-config"},
		{"ServiceAccount", "cloud", ccmName}, {"ServiceAccount", "lb", agentName},
		{"Role", "lb", agentName}, {"Role", "cloud", ccmName + ":leader-election"},
		// The request-header CA is read in kube-system wherever the CCM runs.
		{"RoleBinding", "kube-system", ccmName + ":authentication-reader"},
	} {
		if m[k] == nil {
			t.Errorf("missing %s %s/%s", k.kind, k.namespace, k.name)
		}
	}
	checkBinding(t, m, "ClusterRoleBinding", "", agentName, agentName, "lb", agentName)
	checkBinding(t, m, "ClusterRoleBinding", "", ccmName, ccmName, "cloud", ccmName)

	var secret corev1.Secret
	convert(t, m[key{"Secret", "lb", "peers"}], &secret)
	if secret.StringData["tor-b.password"] != "s3cret" {
		t.Errorf("Secret data %v, want tor-b.password", secret.StringData)
	}

	var d appsv1.Deployment
	convert(t, m[key{"Deployment", "cloud", ccmName}], &d)
	pod := d.Spec.Template.Spec
	c := onlyContainer(t, pod)
	if c.Image != "registry.example/baremetal:v9.9.9" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("CCM image %q pull policy %q", c.Image, c.ImagePullPolicy)
	}
	if *d.Spec.Replicas != 3 || pod.NodeSelector["role"] != "infra" || len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "dedicated" {
		t.Errorf("CCM replicas %d nodeSelector %v tolerations %v", *d.Spec.Replicas, pod.NodeSelector, pod.Tolerations)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("CCM imagePullSecrets %v", pod.ImagePullSecrets)
	}
	if flagValue(c.Args, "--secure-port") != "10300" || c.LivenessProbe.HTTPGet.Port.IntValue() != 10300 ||
		!slices.Contains(c.Args, "--concurrent-service-syncs=4") || flagValue(c.Args, "--leader-elect-resource-namespace") != "cloud" {
		t.Errorf("CCM args %v, probe port %v", c.Args, c.LivenessProbe.HTTPGet.Port)
	}
	// Helm merges maps of values: the request changes, the default limit stays.
	if !c.Resources.Requests.Cpu().Equal(resource.MustParse("100m")) || !c.Resources.Limits.Memory().Equal(resource.MustParse("512Mi")) {
		t.Errorf("CCM resources %v: want the values' CPU request and the default memory limit", c.Resources)
	}

	var ds appsv1.DaemonSet
	convert(t, m[key{"DaemonSet", "lb", agentName}], &ds)
	pod = ds.Spec.Template.Spec
	c = onlyContainer(t, pod)
	if flagValue(c.Args, "--heartbeat-port") != "7575" || flagValue(c.Args, "--metrics-bind-address") != ":9201" ||
		flagValue(c.Args, "--health-bind-address") != ":9202" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9202 {
		t.Errorf("agent args %v readiness port %v", c.Args, c.ReadinessProbe.HTTPGet.Port)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["heartbeat"] != 7575 || ports["metrics"] != 9201 || ports["health"] != 9202 {
		t.Errorf("agent ports %v", ports)
	}
	if !c.Resources.Limits.Memory().Equal(resource.MustParse("1Gi")) || pod.NodeSelector["lb"] != "yes" {
		t.Errorf("agent resources %v nodeSelector %v", c.Resources, pod.NodeSelector)
	}
	checkGoMemLimit(t, c) // follows the values' limit
	var secretVolume string
	for _, s := range pod.Volumes[0].Projected.Sources {
		if s.Secret != nil {
			secretVolume = s.Secret.Name
		}
	}
	if secretVolume != "peers" {
		t.Errorf("agent mounts Secret %q, want the values' secretName", secretVolume)
	}
}

// TestChartCloudConfigIsVerbatim: the cloud-config reaches both ConfigMaps
// byte for byte (comments, quotes, a missing final newline).
func TestChartCloudConfigIsVerbatim(t *testing.T) {
	tool(t, "helm")
	text := "# pools: \"quoted\" and 'single'\npools:\n  - name: a\n    addresses: [\"192.0.2.1\"]   # tail: comment"
	file := filepath.Join(t.TempDir(), "cc.yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := RenderChart(chartDir, "baremetal", "kube-system", "--set-file", "cloudConfig="+file)
	if err != nil {
		t.Fatal(err)
	}
	m := index(t, objs)
	for _, ns := range []string{"kube-system", agentNS} {
		var cm corev1.ConfigMap
		convert(t, m[key{"ConfigMap", ns, "baremetal-cloud-config"}], &cm)
		if cm.Data[configMapKey] != text {
			t.Errorf("ConfigMap %s holds %q, want %q", ns, cm.Data[configMapKey], text)
		}
	}
}

// TestReleasePinsAgree: the example overlay's remote base ref, its image
// tag and the chart's appVersion name the same release.
func TestReleasePinsAgree(t *testing.T) {
	var k struct {
		Resources []string `json:"resources"`
		Images    []struct {
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	readYAML(t, "overlays/example/kustomization.yaml", &k)
	var ref string
	for _, r := range k.Resources {
		if rest, ok := strings.CutPrefix(r, RemoteBase+"?ref="); ok {
			ref = rest
		}
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, chartDir+"/Chart.yaml", &chart)
	if ref == "" || len(k.Images) != 1 || k.Images[0].NewTag != ref || chart.AppVersion != ref {
		t.Errorf("base ref %q, image tag %v, chart appVersion %q: want one release", ref, k.Images, chart.AppVersion)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// sameAs reports every object that differs between two renderings.
func sameAs(t *testing.T, gotName string, got []*unstructured.Unstructured, wantName string, want []*unstructured.Unstructured) {
	t.Helper()
	g, w := index(t, got), index(t, want)
	for k, wo := range w {
		o, ok := g[k]
		if !ok {
			t.Errorf("%s lacks %s %s/%s of %s", gotName, k.kind, k.namespace, k.name, wantName)
			continue
		}
		if diff := yamlDiff(o, wo); diff != "" {
			t.Errorf("%s %s/%s differs between %s and %s (update the chart's templates with deploy/base):\n%s",
				k.kind, k.name, k.namespace, gotName, wantName, diff)
		}
	}
	for k := range g {
		if w[k] == nil {
			t.Errorf("%s renders %s %s/%s, which %s does not have", gotName, k.kind, k.namespace, k.name, wantName)
		}
	}
}

// yamlDiff is empty when a and b are the same object, else the lines of
// their YAML renderings found in only one of them (- want, + got).
func yamlDiff(got, want *unstructured.Unstructured) string {
	g, _ := yaml.Marshal(got.Object)
	w, _ := yaml.Marshal(want.Object)
	if string(g) == string(w) {
		return ""
	}
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	var b strings.Builder
	for _, l := range wl {
		if !slices.Contains(gl, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range gl {
		if !slices.Contains(wl, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		b.WriteString("(the same lines in another order)\n")
	}
	return b.String()
}
