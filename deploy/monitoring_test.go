package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const monitoringDir = "components/monitoring"

// TestMonitoringComponent: the component adds to the base (as kustomize
// renders an overlay using it) Services that select the CCM and agent pods
// by their template labels and name a port they serve, ServiceMonitors that
// select those Services, and alerts on metrics the binaries export.
func TestMonitoringComponent(t *testing.T) {
	tool(t, "kubectl")
	dir := t.TempDir()
	for src, dst := range map[string]string{"base": "base", monitoringDir: "monitoring"} {
		if err := os.CopyFS(filepath.Join(dir, dst), os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	overlay := filepath.Join(dir, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(
		"resources: [../base]\ncomponents: [../monitoring]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := Render(overlay)
	if err != nil {
		t.Fatal(err)
	}
	m := index(t, objs)
	component, err := Read(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range component {
		if m[key{o.GetKind(), o.GetNamespace(), o.GetName()}] == nil {
			t.Errorf("the overlay lacks the component's %s %s", o.GetKind(), describe(o))
		}
	}

	workloads := map[string]*unstructured.Unstructured{
		"kube-system": m[key{"Deployment", "kube-system", ccmName}],
		agentNS:       m[key{"DaemonSet", agentNS, agentName}],
	}
	var monitors int
	for _, sm := range objs {
		if sm.GetKind() != "ServiceMonitor" {
			continue
		}
		monitors++
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		var svc *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == "Service" && o.GetNamespace() == sm.GetNamespace() && labels.SelectorFromSet(sel).Matches(labels.Set(o.GetLabels())) {
				svc = o
			}
		}
		if svc == nil || len(endpoints) != 1 {
			t.Errorf("ServiceMonitor %s selects no Service in its namespace, or has %d endpoints", describe(sm), len(endpoints))
			continue
		}
		port, _ := endpoints[0].(map[string]any)["port"].(string)
		checkServiceTargets(t, svc, workloads[svc.GetNamespace()], port)
	}
	if monitors != 2 {
		t.Errorf("%d ServiceMonitors, want one for the CCM and one for the agents", monitors)
	}

	exported := exportedMetrics(t)
	rules := alertRules(t, m[key{"PrometheusRule", "kube-system", "cloud-provider-baremetal"}])
	for alert, expr := range rules {
		for _, metric := range regexp.MustCompile(`baremetal_[a-z_]+`).FindAllString(expr, -1) {
			if !exported[metric] {
				t.Errorf("alert %s uses %s, which no binary exports", alert, metric)
			}
		}
	}
}

// checkServiceTargets: svc selects workload's pods and its port named
// portName targets a container port the pods declare.
func checkServiceTargets(t *testing.T, svc, workload *unstructured.Unstructured, portName string) {
	t.Helper()
	if workload == nil {
		t.Errorf("Service %s is in a namespace without a workload", describe(svc))
		return
	}
	sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	podLabels, _, _ := unstructured.NestedStringMap(workload.Object, "spec", "template", "metadata", "labels")
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(podLabels)) {
		t.Errorf("Service %s selects %v; the pods of %s are labelled %v", describe(svc), sel, describe(workload), podLabels)
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	var target any
	for _, p := range ports {
		p := p.(map[string]any)
		if p["name"] == portName {
			target = p["targetPort"]
		}
	}
	containers, _, _ := unstructured.NestedSlice(workload.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		cports, _, _ := unstructured.NestedSlice(c.(map[string]any), "ports")
		for _, cp := range cports {
			if cp.(map[string]any)["name"] == target {
				return
			}
		}
	}
	t.Errorf("Service %s port %q targets %v, which %s does not declare", describe(svc), portName, target, describe(workload))
}

// alertRules returns alert name -> expr of a PrometheusRule.
func alertRules(t *testing.T, rule *unstructured.Unstructured) map[string]string {
	t.Helper()
	if rule == nil {
		t.Fatal("no PrometheusRule kube-system/cloud-provider-baremetal")
	}
	out := map[string]string{}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			alert, _ := r["alert"].(string)
			expr, _ := r["expr"].(string)
			out[alert] = strings.TrimSpace(expr)
		}
	}
	return out
}

// exportedMetrics finds the metric names the binaries register: the
// baremetal_ string literals in the repository's non-test Go files.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`"(baremetal_[a-z_]+)"`)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && slices.Contains([]string{".git", "hack", "test"}, d.Name()) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in the Go sources: %v", len(names), names)
	}
	return names
}

// TestDocumentedAlertsAreShipped: the alerts docs/metrics-and-events.md
// suggests are the component's, expression for expression.
func TestDocumentedAlertsAreShipped(t *testing.T) {
	data, err := os.ReadFile("../docs/metrics-and-events.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(data), "## Alerts worth having")
	var block string
	for _, b := range strings.Split(section, "```yaml\n")[1:] {
		if b, _, _ = strings.Cut(b, "```"); strings.HasPrefix(b, "- alert:") {
			block = b
		}
	}
	if block == "" {
		t.Fatal(`docs/metrics-and-events.md has no yaml block of alerts under "## Alerts worth having"`)
	}
	var documented []struct {
		Alert string `json:"alert"`
		Expr  string `json:"expr"`
	}
	if err := yaml.Unmarshal([]byte(block), &documented); err != nil {
		t.Fatalf("docs/metrics-and-events.md alerts: %v", err)
	}
	objs, err := Read(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	m := index(t, objs)
	shipped := alertRules(t, m[key{"PrometheusRule", "kube-system", "cloud-provider-baremetal"}])
	if len(documented) != len(shipped) {
		t.Errorf("the docs suggest %d alerts, the component ships %d", len(documented), len(shipped))
	}
	for _, d := range documented {
		if shipped[d.Alert] != strings.TrimSpace(d.Expr) {
			t.Errorf("documented alert %s: expr %q, the component's %q", d.Alert, d.Expr, shipped[d.Alert])
		}
	}
}

// alertRule is one alert of the component, with the text it shows.
type alertRule struct {
	name, expr, text string
}

// componentAlerts returns the alerts of the monitoring component.
func componentAlerts(t *testing.T) []alertRule {
	t.Helper()
	objs, err := Read(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	rule := index(t, objs)[key{"PrometheusRule", "kube-system", "cloud-provider-baremetal"}]
	if rule == nil {
		t.Fatal("no PrometheusRule kube-system/cloud-provider-baremetal")
	}
	var out []alertRule
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			a := alertRule{}
			a.name, _ = r["alert"].(string)
			a.expr, _ = r["expr"].(string)
			ann, _ := r["annotations"].(map[string]any)
			for _, k := range []string{"summary", "description"} {
				s, _ := ann[k].(string)
				a.text += s + "\n"
			}
			out = append(out, a)
		}
	}
	return out
}

// TestAlertsCompareAgentsWithThemselves: baremetal_live_agents counts the
// agents of one node's layer-2 pools, so nodes of different pools rightly
// differ; an alert that aggregates it across agents (min, max, avg, ...
// without "by (node)") fires on a healthy cluster.
func TestAlertsCompareAgentsWithThemselves(t *testing.T) {
	across := regexp.MustCompile(`\b(min|max|avg|sum|count|stddev|quantile)\s*(\(|without)`)
	var uses int
	for _, a := range componentAlerts(t) {
		if !strings.Contains(a.expr, "baremetal_live_agents") {
			continue
		}
		uses++
		if across.MatchString(a.expr) && !regexp.MustCompile(`by\s*\(\s*node\s*\)`).MatchString(a.expr) {
			t.Errorf("alert %s aggregates baremetal_live_agents across agents: %s", a.name, a.expr)
		}
	}
	if uses == 0 {
		t.Error("no alert watches baremetal_live_agents (agents of a node's pools going missing)")
	}
}

// TestAlertsNameTheirEvent: the agent's ARP/NDP conflict is the event
// AnnounceConflict; AddressConflict is the CCM's (two Services' statuses).
func TestAlertsNameTheirEvent(t *testing.T) {
	var found bool
	for _, a := range componentAlerts(t) {
		if !strings.Contains(a.expr, "baremetal_probe_conflicts_total") {
			continue
		}
		found = true
		if want := "reason=" + apicontract.ReasonAnnounceConflict; !strings.Contains(a.text, want) {
			t.Errorf("alert %s counts the agent's conflicts but its text does not name %s:\n%s", a.name, want, a.text)
		}
		if strings.Contains(a.text, apicontract.ReasonAddressConflict) && !strings.Contains(a.text, apicontract.ReasonAnnounceConflict) || strings.Contains(a.name, apicontract.ReasonAddressConflict) {
			t.Errorf("alert %s names the CCM's %s for the agent's conflict", a.name, apicontract.ReasonAddressConflict)
		}
	}
	if !found {
		t.Error("no alert on baremetal_probe_conflicts_total")
	}
}

// TestAlertJobsAreScraped: an alert on up{job="X"} names a job the
// component's ServiceMonitors create; the Prometheus Operator names a job
// after the Service it scrapes unless the ServiceMonitor sets jobLabel.
func TestAlertJobsAreScraped(t *testing.T) {
	objs, err := Read(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, sm := range objs {
		if sm.GetKind() != "ServiceMonitor" {
			continue
		}
		if jl, _, _ := unstructured.NestedString(sm.Object, "spec", "jobLabel"); jl != "" {
			t.Fatalf("ServiceMonitor %s sets jobLabel; this test assumes jobs named after Services", describe(sm))
		}
		sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for _, o := range objs {
			if o.GetKind() == "Service" && o.GetNamespace() == sm.GetNamespace() && labels.SelectorFromSet(sel).Matches(labels.Set(o.GetLabels())) {
				jobs[o.GetName()] = true
			}
		}
	}
	re := regexp.MustCompile(`\bup\{[^}]*job="([^"]+)"`)
	for _, a := range componentAlerts(t) {
		for _, m := range re.FindAllStringSubmatch(a.expr, -1) {
			if !jobs[m[1]] {
				t.Errorf("alert %s watches job %q; the ServiceMonitors scrape %v", a.name, m[1], jobs)
			}
		}
	}
}
