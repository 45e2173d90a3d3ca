package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

const (
	image        = "ghcr.io/cloud-provider-baremetal/cloud-provider-baremetal:v0.1.0"
	ccmName      = "baremetal-cloud-controller-manager"
	agentName    = "baremetal-node-agent"
	agentNS      = "baremetal-system"
	configMount  = "/etc/baremetal"
	configFile   = "/etc/baremetal/cloud-config.yaml"
	configMapKey = "cloud-config.yaml"
)

// TestManifestsParse checks that every YAML file under deploy/ is well-formed
// Kubernetes YAML on its own, before kustomize sees it.
func TestManifestsParse(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && path == "helm" {
			return filepath.SkipDir // templates, checked by rendering (chart_test.go)
		}
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") && filepath.Base(path) != "cloud-config.yaml" {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found only %d manifests: %v", len(files), files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
	}
}

// TestCloudConfigFiles loads the cloud-config files with the binaries' loader.
func TestCloudConfigFiles(t *testing.T) {
	for _, f := range []string{"base/cloud-config.yaml", "overlays/example/cloud-config.yaml"} {
		if _, err := config.Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}

// TestKustomizations checks what each kustomization produces: rendered by
// `kubectl kustomize` (the overlay from an offline copy, as docs/install.md
// describes it, since the example names its base by remote address), and by
// the small reader of the kustomize features the manifests use (resources,
// ConfigMap generators, images), which must agree with kubectl.
func TestKustomizations(t *testing.T) {
	for _, dir := range []string{"base", "overlays/example"} {
		t.Run(dir, func(t *testing.T) {
			objs, err := Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			tool(t, "kubectl")
			renderDir := dir
			if dir == "overlays/example" {
				renderDir = offlineCopy(t, dir)
			}
			rendered, err := Render(renderDir)
			if err != nil {
				t.Fatal(err)
			}
			sameObjects(t, rendered, objs)
			m := index(t, rendered)
			checkKinds(t, m, dir == "overlays/example")
			checkCloudConfigs(t, m)
			checkCCM(t, m)
			checkAgent(t, m)
			checkCCMRBAC(t, m)
			checkAgentRBAC(t, m)
		})
	}
}

// tool returns the cached helm or kubectl. Without it the test is skipped,
// unless BAREMETAL_REQUIRE_TOOLS is set (make test sets it after make deps
// built them).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := ToolPath(name)
	if err != nil {
		if os.Getenv("BAREMETAL_REQUIRE_TOOLS") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// offlineCopy does what docs/install.md says for a cluster without access to
// GitHub: copy the overlay, copy the base into it, and name the copy.
func offlineCopy(t *testing.T, overlay string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "my-cluster")
	if err := os.CopyFS(dst, os.DirFS(overlay)); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dst, "base"), os.DirFS("base")); err != nil {
		t.Fatal(err)
	}
	k := filepath.Join(dst, "kustomization.yaml")
	data, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	replaced := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "  - "+RemoteBase+"?ref=") {
			lines[i] = "  - base"
			replaced++
		}
	}
	if replaced != 1 {
		t.Fatalf("%s names the remote base %d times, want once", k, replaced)
	}
	if err := os.WriteFile(k, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

type key struct{ kind, namespace, name string }

func index(t *testing.T, objs []*unstructured.Unstructured) map[key]*unstructured.Unstructured {
	t.Helper()
	m := map[key]*unstructured.Unstructured{}
	for _, o := range objs {
		k := key{o.GetKind(), o.GetNamespace(), o.GetName()}
		if _, dup := m[k]; dup {
			t.Errorf("duplicate %v", k)
		}
		m[k] = o
	}
	return m
}

func checkKinds(t *testing.T, m map[key]*unstructured.Unstructured, withSecret bool) {
	t.Helper()
	want := []key{
		{"Namespace", "", agentNS},
		{"ServiceAccount", "kube-system", ccmName},
		{"ServiceAccount", agentNS, agentName},
		{"ClusterRole", "", ccmName},
		{"ClusterRole", "", agentName},
		{"ClusterRoleBinding", "", ccmName},
		{"ClusterRoleBinding", "", ccmName + ":auth-delegator"},
		{"ClusterRoleBinding", "", agentName},
		{"Role", "kube-system", ccmName + ":leader-election"},
		{"RoleBinding", "kube-system", ccmName + ":leader-election"},
		{"RoleBinding", "kube-system", ccmName + ":authentication-reader"},
		{"Role", agentNS, agentName},
		{"RoleBinding", agentNS, agentName},
		{"ConfigMap", "kube-system", "baremetal-cloud-config"},
		{"ConfigMap", agentNS, "baremetal-cloud-config"},
		{"Deployment", "kube-system", ccmName},
		{"DaemonSet", agentNS, agentName},
	}
	if withSecret {
		want = append(want, key{"Secret", agentNS, "baremetal-bgp-passwords"})
	}
	for _, k := range want {
		if m[k] == nil {
			t.Errorf("missing %s %s/%s", k.kind, k.namespace, k.name)
		}
	}
	if len(m) != len(want) {
		var got []string
		for k := range m {
			got = append(got, k.kind+" "+k.namespace+"/"+k.name)
		}
		slices.Sort(got)
		t.Errorf("%d objects, want %d: %v", len(m), len(want), got)
	}
}

// checkCloudConfigs: both namespaces get the same file, and it loads.
func checkCloudConfigs(t *testing.T, m map[key]*unstructured.Unstructured) {
	t.Helper()
	var texts []string
	for _, ns := range []string{"kube-system", agentNS} {
		var cm corev1.ConfigMap
		convert(t, m[key{"ConfigMap", ns, "baremetal-cloud-config"}], &cm)
		text, ok := cm.Data[configMapKey]
		if !ok {
			t.Fatalf("ConfigMap %s/baremetal-cloud-config has no key %s", ns, configMapKey)
		}
		if _, err := config.Parse([]byte(text)); err != nil {
			t.Errorf("ConfigMap %s/baremetal-cloud-config: %v", ns, err)
		}
		texts = append(texts, text)
	}
	if texts[0] != texts[1] {
		t.Error("the CCM and the agents would read different cloud-configs")
	}
}

func checkCCM(t *testing.T, m map[key]*unstructured.Unstructured) {
	t.Helper()
	var d appsv1.Deployment
	convert(t, m[key{"Deployment", "kube-system", ccmName}], &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != ccmName || !pod.HostNetwork {
		t.Errorf("serviceAccountName %q hostNetwork %v", pod.ServiceAccountName, pod.HostNetwork)
	}
	for _, taint := range []string{"node.cloudprovider.kubernetes.io/uninitialized", "node-role.kubernetes.io/control-plane"} {
		if !tolerates(pod.Tolerations, corev1.Taint{Key: taint, Value: "true", Effect: corev1.TaintEffectNoSchedule}) {
			t.Errorf("does not tolerate %s", taint)
		}
	}
	c := onlyContainer(t, pod)
	for _, arg := range []string{"--cloud-provider=baremetal", "--cloud-config=" + configFile, "--leader-elect=true"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	port := flagValue(c.Args, "--secure-port")
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != port {
			t.Errorf("%s probe %+v: want HTTPS /healthz on the secure port %s", name, p, port)
		}
	}
	// The pod's UID, name and namespace: a restarted container takes the
	// leader Lease of its predecessor in the same pod (internal/leaderlease).
	if env := downwardEnv(c); env["POD_UID"] != "metadata.uid" || env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("CCM downward API env = %v, want POD_UID, POD_NAME and POD_NAMESPACE", env)
	}
	checkGoMemLimit(t, c)
	checkConfigMount(t, pod, c)
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("CCM securityContext %+v: want no capabilities and no privilege escalation", sc)
	}
}

func checkAgent(t *testing.T, m map[key]*unstructured.Unstructured) {
	t.Helper()
	var ds appsv1.DaemonSet
	convert(t, m[key{"DaemonSet", agentNS, agentName}], &ds)
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != agentName || !pod.HostNetwork {
		t.Errorf("serviceAccountName %q hostNetwork %v", pod.ServiceAccountName, pod.HostNetwork)
	}
	c := onlyContainer(t, pod)
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("agent has no securityContext capabilities")
	}
	if (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("agent must not be privileged nor allow privilege escalation")
	}
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		// NET_RAW: the ARP/NDP sockets. NET_ADMIN: only the one-time removal
		// of VIPs an older agent bound (announce/bind.RemoveLegacy).
		t.Errorf("capabilities add %v drop %v; want add NET_ADMIN NET_RAW, drop ALL", sc.Capabilities.Add, sc.Capabilities.Drop)
	}
	_, healthPort, _ := strings.Cut(flagValue(c.Args, "--health-bind-address"), ":")
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != healthPort {
		t.Errorf("readiness probe %+v: want /healthz on --health-bind-address port %q", p, healthPort)
	}
	if c.LivenessProbe != nil {
		t.Error("a liveness probe would restart agents during API outages and drop the addresses they hold")
	}
	if flagValue(c.Args, "--namespace") != "$(POD_NAMESPACE)" {
		t.Errorf("--namespace = %q, want the pod's own namespace", flagValue(c.Args, "--namespace"))
	}
	envFrom := downwardEnv(c)
	if envFrom["NODE_NAME"] != "spec.nodeName" || envFrom["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env = %v", envFrom)
	}
	checkGoMemLimit(t, c)
	checkConfigMount(t, pod, c)
}

// downwardEnv maps the container's env names to the pod fields they take
// from the downward API.
func downwardEnv(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	return env
}

// checkGoMemLimit: GOMEMLIMIT, as the kubelet makes it from the container's
// env (the memory limit through the downward API, divided by the divisor
// and rounded up; $(VAR) expanded from earlier variables), is a plain byte
// count between 90 % and 100 % of the container's memory limit: close to the
// limit, with room for what the Go runtime does not count.
func checkGoMemLimit(t *testing.T, c corev1.Container) {
	t.Helper()
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Errorf("container %s has no memory limit", c.Name)
		return
	}
	vars := map[string]string{}
	got := ""
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.ResourceFieldRef != nil && r.ResourceFieldRef.Resource == "limits.memory" {
			div := r.ResourceFieldRef.Divisor.Value()
			if div == 0 {
				div = 1
			}
			vars[e.Name] = strconv.FormatInt((limit.Value()+div-1)/div, 10)
		}
		if e.Name == "GOMEMLIMIT" {
			got = envReference.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := vars[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		}
	}
	bytes, err := strconv.ParseInt(got, 10, 64)
	if err != nil {
		t.Errorf("container %s: GOMEMLIMIT %q is not a byte count derived from limits.memory (%v)", c.Name, got, err)
		return
	}
	if share := float64(bytes) / float64(limit.Value()); share < 0.9 || share >= 1 {
		t.Errorf("container %s: GOMEMLIMIT %d is %.1f%% of the memory limit %s, want 90-100%%", c.Name, bytes, 100*share, limit.String())
	}
}

var envReference = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// checkConfigMount: the cloud-config directory is mounted whole (no subPath,
// which would freeze the file), from the baremetal-cloud-config ConfigMap.
func checkConfigMount(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	if c.Image != image {
		t.Errorf("image %q, want %q", c.Image, image)
	}
	if flagValue(c.Args, "--cloud-config") != configFile {
		t.Errorf("--cloud-config = %q", flagValue(c.Args, "--cloud-config"))
	}
	var vol string
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == configMount {
			if vm.SubPath != "" || !vm.ReadOnly {
				t.Errorf("mount %+v: want a read-only directory mount", vm)
			}
			vol = vm.Name
		}
	}
	for _, v := range pod.Volumes {
		if v.Name != vol {
			continue
		}
		if v.ConfigMap != nil && v.ConfigMap.Name == "baremetal-cloud-config" {
			return
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil && s.ConfigMap.Name == "baremetal-cloud-config" {
					return
				}
			}
		}
	}
	t.Errorf("no volume from ConfigMap baremetal-cloud-config mounted at %s", configMount)
}

func checkCCMRBAC(t *testing.T, m map[key]*unstructured.Unstructured) {
	t.Helper()
	var cr rbacv1.ClusterRole
	convert(t, m[key{"ClusterRole", "", ccmName}], &cr)
	granted := grants(cr.Rules)
	for _, want := range []string{
		"/services:get", "/services:list", "/services:watch", "/services/status:patch", "/services/status:update",
		"/nodes:get", "/nodes:list", "/nodes:watch", "/nodes:patch", "/nodes:update", "/nodes/status:patch",
		"/events:create", "/events:patch",
	} {
		if !granted[want] {
			t.Errorf("CCM ClusterRole lacks %s", want)
		}
	}
	checkNoBroadGrants(t, "CCM ClusterRole", cr.Rules)
	for g := range granted {
		if strings.HasPrefix(g, "/services:") && !slices.Contains([]string{"/services:get", "/services:list", "/services:watch"}, g) {
			t.Errorf("CCM ClusterRole grants %s; the service controller writes only through services/status", g)
		}
		if strings.HasSuffix(g, ":delete") || strings.Contains(g, "secrets") || strings.Contains(g, "leases") {
			t.Errorf("CCM ClusterRole grants %s", g)
		}
	}
	var role rbacv1.Role
	convert(t, m[key{"Role", "kube-system", ccmName + ":leader-election"}], &role)
	for _, r := range role.Rules {
		if slices.Contains(r.Verbs, "update") && !slices.Equal(r.ResourceNames, []string{"cloud-controller-manager"}) {
			t.Errorf("leader-election rule %+v may update Leases other than cloud-controller-manager", r)
		}
	}
	checkBinding(t, m, "ClusterRoleBinding", "", ccmName+":auth-delegator", "system:auth-delegator", "kube-system", ccmName)
	checkBinding(t, m, "RoleBinding", "kube-system", ccmName+":authentication-reader", "extension-apiserver-authentication-reader", "kube-system", ccmName)
	checkBinding(t, m, "ClusterRoleBinding", "", ccmName, ccmName, "kube-system", ccmName)
	checkBinding(t, m, "RoleBinding", "kube-system", ccmName+":leader-election", ccmName+":leader-election", "kube-system", ccmName)
}

func checkAgentRBAC(t *testing.T, m map[key]*unstructured.Unstructured) {
	t.Helper()
	var cr rbacv1.ClusterRole
	convert(t, m[key{"ClusterRole", "", agentName}], &cr)
	checkNoBroadGrants(t, "agent ClusterRole", cr.Rules)
	granted := grants(cr.Rules)
	for _, want := range []string{"/services:watch", "/nodes:watch", "discovery.k8s.io/endpointslices:watch", "/events:create"} {
		if !granted[want] {
			t.Errorf("agent ClusterRole lacks %s", want)
		}
	}
	for g := range granted {
		res, verb, _ := strings.Cut(g, ":")
		if res != "/events" && !slices.Contains([]string{"get", "list", "watch"}, verb) {
			t.Errorf("agent ClusterRole grants %s; the agent only reads the cluster", g)
		}
	}
	var role rbacv1.Role
	convert(t, m[key{"Role", agentNS, agentName}], &role)
	if g := grants(role.Rules); len(g) != 10 || !g["coordination.k8s.io/leases:update"] || !g["coordination.k8s.io/leases:create"] || !g["/secrets:get"] || !g["/secrets:create"] {
		t.Errorf("agent Role grants %v; want only its Leases and the heartbeat key Secret", g)
	}
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "secrets") && !slices.Equal(r.Verbs, []string{"create"}) && !slices.Equal(r.ResourceNames, []string{"baremetal-node-agent-heartbeat"}) {
			t.Errorf("agent Role reads Secrets %v; want only baremetal-node-agent-heartbeat", r.ResourceNames)
		}
	}
	checkBinding(t, m, "ClusterRoleBinding", "", agentName, agentName, agentNS, agentName)
	checkBinding(t, m, "RoleBinding", agentNS, agentName, agentName, agentNS, agentName)
}

func checkNoBroadGrants(t *testing.T, what string, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, r := range rules {
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("%s has a wildcard rule %+v", what, r)
		}
	}
}

// grants flattens rules into "group/resource:verb".
func grants(rules []rbacv1.PolicyRule) map[string]bool {
	g := map[string]bool{}
	for _, r := range rules {
		for _, group := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					g[group+"/"+res+":"+v] = true
				}
			}
		}
	}
	return g
}

func checkBinding(t *testing.T, m map[key]*unstructured.Unstructured, kind, ns, name, role, saNS, sa string) {
	t.Helper()
	o := m[key{kind, ns, name}]
	if o == nil {
		t.Errorf("missing %s %s/%s", kind, ns, name)
		return
	}
	var b rbacv1.RoleBinding // same shape as ClusterRoleBinding
	convert(t, o, &b)
	if b.RoleRef.Name != role || len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
		b.Subjects[0].Name != sa || b.Subjects[0].Namespace != saNS {
		t.Errorf("%s %s binds %+v to %+v; want %s to ServiceAccount %s/%s", kind, name, b.RoleRef, b.Subjects, role, saNS, sa)
	}
}

func tolerates(ts []corev1.Toleration, taint corev1.Taint) bool {
	for _, tol := range ts {
		if tol.ToleratesTaint(klog.Background(), &taint, false) {
			return true
		}
	}
	return false
}

func onlyContainer(t *testing.T, pod corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	return pod.Containers[0]
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if u == nil {
		t.Fatalf("object for %T is missing", into)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// sameObjects compares kubectl's rendering with the reader's, object by object.
func sameObjects(t *testing.T, rendered, read []*unstructured.Unstructured) {
	t.Helper()
	byKey := func(objs []*unstructured.Unstructured) map[key]*unstructured.Unstructured {
		m := map[key]*unstructured.Unstructured{}
		for _, o := range objs {
			m[key{o.GetKind(), o.GetNamespace(), o.GetName()}] = o
		}
		return m
	}
	r, o := byKey(rendered), byKey(read)
	for k, want := range r {
		got, ok := o[k]
		if !ok {
			t.Errorf("kubectl kustomize produces %v, the reader does not", k)
			continue
		}
		if !equality.Semantic.DeepEqual(want.Object, got.Object) {
			t.Errorf("%v differs between kubectl kustomize and the reader", k)
		}
	}
	for k := range o {
		if _, ok := r[k]; !ok {
			t.Errorf("the reader produces %v, kubectl kustomize does not", k)
		}
	}
}
